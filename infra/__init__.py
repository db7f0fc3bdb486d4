"""The stacks' building blocks, sorted by kind:

  infra/*.py        Pulumi components, one concern per module (a ComponentResource and its typed args), and
                    the pure renderers they share (server config, policies, monitoring config, audit devices)
  infra/providers/  Pulumi dynamic providers (Vault, the container engine, TLS, random values)
  infra/clients/    run-time clients the providers, the tools and the tests share (Vault operations, the
                    Kubernetes port-forward, the container engine's API)
  infra/agents/     scripts copied into a container or pod and run there (snapshot agent, restore check, the
                    backup store they use); they import only each other and third-party libraries
"""
# The agents' text is part of the stacks' resources (a container's files, a ConfigMap): it moved here from
# infra/ unchanged, so existing stacks show no change. Their repository fallback `from infra import
# backup_store, snapshot_agent` finds the modules under these names.
from infra.agents import backup_store, snapshot_agent  # noqa: F401
