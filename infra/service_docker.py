"""The env-vars service on the local container engine: its image built from service/Dockerfile, its
SQLite database on a volume, on the Vault network, published on 127.0.0.1. The executor's AppRole secret
id reaches it as a 0400 file copied in before start: never in its config, environment or logs."""
import os
from dataclasses import dataclass, field
from typing import Optional

import pulumi

from infra.providers import docker

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRETS_DIR = "/run/envvars"


@dataclass
class ServiceDockerArgs:
    base_image: str
    network_name: pulumi.Input[str]
    vault_address: pulumi.Input[str]  # as the service reaches Vault on that network
    vault_ca_pem: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    oidc_jwks_url: pulumi.Input[str]
    oidc_audience: pulumi.Input[str]
    role_id: pulumi.Input[str]
    secret_id: pulumi.Input[str]
    host_port: int = 0
    rate_limit: str = "120/minute"
    labels: dict[str, str] = field(default_factory=dict)
    docker_host: Optional[str] = None


class ServiceDocker(pulumi.ComponentResource):
    """Outputs: `url` (on the host), `image_id` and `container_name`."""

    url: pulumi.Output[str]

    def __init__(self, name: str, args: ServiceDockerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:ServiceDocker", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}-{name}"
        image = docker.Image(
            f"{name}-image", tag=f"localhost/vault-envvars/service:{pulumi.get_stack()}", context=REPO_ROOT,
            dockerfile="service/Dockerfile", build_args={"BASE": args.base_image},
            digest_paths=["service", ".build/wheels"], docker_host=args.docker_host, opts=child)
        volumes = [docker.Volume(f"{name}-{p}", volume_name=f"{prefix}-{p}", labels=args.labels,
                                 docker_host=args.docker_host, opts=child) for p in ("data", "secrets")]
        files = pulumi.Output.secret(pulumi.Output.all(args.secret_id, args.vault_ca_pem).apply(lambda v: {
            f"{SECRETS_DIR}/approle-secret-id": {"content": v[0], "mode": 0o400},
            f"{SECRETS_DIR}/vault-ca.pem": {"content": v[1] or "", "mode": 0o444},
        }))
        env = pulumi.Output.all(args.vault_address, args.oidc_issuer, args.oidc_jwks_url, args.oidc_audience,
                                args.role_id, args.vault_ca_pem).apply(lambda v: {
            "ENVVARS_VAULT_ADDR": v[0],
            "ENVVARS_OIDC_ISSUER": v[1],
            "ENVVARS_OIDC_JWKS_URL": v[2],
            "ENVVARS_OIDC_AUDIENCE": v[3],
            "ENVVARS_APPROLE_ROLE_ID": v[4],  # an identifier, not a secret: useless without the secret id
            "ENVVARS_APPROLE_SECRET_ID_FILE": f"{SECRETS_DIR}/approle-secret-id",
            "ENVVARS_RATE_LIMIT": args.rate_limit,
            **({"ENVVARS_VAULT_CACERT": f"{SECRETS_DIR}/vault-ca.pem",
                "ENVVARS_OIDC_CACERT": f"{SECRETS_DIR}/vault-ca.pem"} if v[5] else {}),
        })
        container = docker.Container(
            f"{name}-api", container_name=f"{prefix}-api", image=image.image_id, env=env,
            ports=[{"internal": 8080, "external": args.host_port}],
            networks=[{"name": args.network_name, "aliases": ["envvars"]}],
            volumes=[{"source": f"{prefix}-data", "target": "/data"},
                     {"source": f"{prefix}-secrets", "target": SECRETS_DIR}],
            user="1000:1000", read_only=True, tmpfs={"/tmp": "rw,size=64m"}, files=files,
            labels={**args.labels, "vault-envvars.role": "service"}, mem_limit="512m",
            wait_http_path="/healthz", docker_host=args.docker_host,
            opts=pulumi.ResourceOptions(parent=self, depends_on=volumes))
        self.url = container.host_ports.apply(lambda p: f"http://127.0.0.1:{int(p[0]['external'])}")
        self.image_id = image.image_id
        self.container_name = container.id.apply(lambda _: f"{prefix}-api")
        self.register_outputs({"url": self.url, "image_id": self.image_id, "container_name": self.container_name})
