"""Kubernetes objects through pulumi-kubernetes, rendered as manifests to a folder."""
import pulumi
import pulumi_kubernetes as k8s

cfg = pulumi.Config()
provider = k8s.Provider("render", render_yaml_to_directory=cfg.require("renderDir"))
opts = pulumi.ResourceOptions(provider=provider)
k8s.core.v1.ConfigMap(
    "settings",
    metadata={"name": "smoke-settings", "namespace": "default"},
    data={"mode": "smoke"},
    opts=opts,
)
k8s.apps.v1.Deployment(
    "web",
    metadata={"name": "smoke-web", "namespace": "default"},
    spec={
        "replicas": 2,
        "selector": {"matchLabels": {"app": "smoke-web"}},
        "template": {
            "metadata": {"labels": {"app": "smoke-web"}},
            "spec": {"containers": [{"name": "web", "image": "localhost/vault-envvars/debian-python:bookworm-r2"}]},
        },
    },
    opts=opts,
)
