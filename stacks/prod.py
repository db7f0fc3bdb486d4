"""The `prod` stack: Kubernetes. At this stage it lays down the namespace the Vault cluster will use."""
import pulumi
import pulumi_kubernetes as k8s

from stacks.config import ProdConfig


def deploy() -> dict[str, pulumi.Output]:
    cfg = ProdConfig.load()
    provider = k8s.Provider("k8s", render_yaml_to_directory=cfg.render_dir or None)
    ns = k8s.core.v1.Namespace(
        "vault-namespace",
        metadata={"name": cfg.namespace, "labels": {"app.kubernetes.io/part-of": "vault-envvars"}},
        opts=pulumi.ResourceOptions(provider=provider),
    )
    outputs = {"namespace": ns.metadata["name"]}
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
