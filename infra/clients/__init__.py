"""Run-time clients: what the dynamic providers, the tools and the tests use to reach a server while they
run (Vault's `sys` API, a pod through the Kubernetes API, the container engine's API); no Pulumi resource."""
