"""The env-vars service on the local container engine: its image built from service/Dockerfile, its
SQLite database on a volume, on the Vault network, published on 127.0.0.1. The executor's AppRole secret
id and the dashboard's session key reach it as 0400 files copied in before start: never in its config, environment or logs."""
import os
from dataclasses import dataclass, field
from typing import Optional

import pulumi

from infra.providers import docker
from infra.providers.random import RandomSecret
from infra.service_connection import SECRETS_DIR, ServiceConnection, secret_files, service_env

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class ServiceDockerArgs:
    base_image: str
    network_name: pulumi.Input[str]
    connection: ServiceConnection
    host_port: pulumi.Input[int] = 0  # 0: the engine picks one
    rate_limit: str = "120/minute"
    labels: dict[str, str] = field(default_factory=dict)
    docker_host: Optional[str] = None


class ServiceDocker(pulumi.ComponentResource):
    """Outputs: `url` (on the host), `image_id`, `container_name` and `data_volume`."""

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
        session_key = RandomSecret(f"{name}-session-key", length=32, opts=child)
        files = secret_files(args.connection, session_key.result).apply(lambda named: {
            f"{SECRETS_DIR}/{n}": {"content": c, "mode": 0o444 if n.endswith(".pem") else 0o400}
            for n, c in named.items()})
        # A container's /proc is masked: the jobs' sandbox cannot mount one of its own (unmasking it would let
        # the service write the host's sysctls), so jobs here get none (docs/security.md).
        env = service_env(args.connection, {"ENVVARS_RATE_LIMIT": args.rate_limit, "ENVVARS_JOB_PROC": "none"})
        container = docker.Container(
            f"{name}-api", container_name=f"{prefix}-api", image=image.image_id, env=env,
            ports=[{"internal": 8080, "external": args.host_port}],
            networks=[{"name": args.network_name, "aliases": ["envvars"]}],
            volumes=[{"source": f"{prefix}-data", "target": "/data"},
                     {"source": f"{prefix}-secrets", "target": SECRETS_DIR}],
            # uid 0 with only what the jobs' sandbox needs: switch to each job's uid, and end the job.
            user="0:0", cap_add=["SETUID", "SETGID", "KILL"], read_only=True, tmpfs={"/tmp": "rw,size=64m"},
            files=files,
            labels={**args.labels, "vault-envvars.role": "service"}, mem_limit="512m",
            wait_http_path="/healthz", docker_host=args.docker_host,
            opts=pulumi.ResourceOptions(parent=self, depends_on=volumes))
        self.url = container.host_ports.apply(lambda p: f"http://127.0.0.1:{int(p[0]['external'])}")
        self.image_id = image.image_id
        self.container_name = container.id.apply(lambda _: f"{prefix}-api")
        self.data_volume = volumes[0].id  # its SQLite database, envvars.db (the backups read it)
        self.register_outputs({"url": self.url, "image_id": self.image_id, "container_name": self.container_name,
                               "data_volume": self.data_volume})
