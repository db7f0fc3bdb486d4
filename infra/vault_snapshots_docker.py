"""Scheduled Raft snapshots beside a Vault cluster on the local engine: a container running
infra/snapshot_agent.py on an interval, snapshots on a volume of their own."""
from dataclasses import dataclass, field
from typing import Optional

import pulumi

from infra import snapshot_agent
from infra.providers import docker

AGENT_DIR = "/agent"
DATA_DIR = "/data"
SNAPSHOT_DIR = f"{DATA_DIR}/snapshots"


@dataclass
class VaultSnapshotsDockerArgs:
    image: str  # any image with python3 (the project's Debian base by default)
    network_name: pulumi.Input[str]
    vault_address: pulumi.Input[str]  # as containers on that network reach the cluster
    ca_cert_pem: pulumi.Input[str]
    role_id: pulumi.Input[str]
    secret_id: pulumi.Input[str]
    interval_seconds: int = 3600
    retain: int = 24
    labels: dict[str, str] = field(default_factory=dict)
    # A Prometheus Pushgateway to push each run's gauges to, and the network it is on (the monitoring's
    # own, which the agent joins too); empty: none.
    pushgateway_url: pulumi.Input[str] = ""
    pushgateway_network: pulumi.Input[str] = ""
    docker_host: Optional[str] = None


class VaultSnapshotsDocker(pulumi.ComponentResource):
    """Outputs: `volume_name` (where the snapshots are, under snapshots/) and `container_name`."""

    volume_name: pulumi.Output[str]
    container_name: pulumi.Output[str]

    def __init__(self, name: str, args: VaultSnapshotsDockerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:VaultSnapshotsDocker", name, None, opts)
        if args.retain < 1 or args.interval_seconds < 10:
            raise ValueError("snapshots need retain >= 1 and an interval of at least 10 s")
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}-{name}"
        with open(snapshot_agent.__file__) as f:
            agent = f.read()
        volumes = [docker.Volume(f"{name}-{p}", volume_name=f"{prefix}-{p}", labels=args.labels,
                                 docker_host=args.docker_host, opts=child) for p in ("data", "agent")]
        # mypy cannot carry Output.secret's type through apply's lambda.
        files = pulumi.Output.secret(pulumi.Output.all(args.ca_cert_pem, args.role_id, args.secret_id).apply(  # type: ignore[arg-type,var-annotated]
            lambda v: {
                f"{AGENT_DIR}/snapshot_agent.py": {"content": agent, "mode": 0o500},
                f"{AGENT_DIR}/ca.pem": {"content": v[0], "mode": 0o444},
                f"{AGENT_DIR}/role_id": {"content": v[1], "mode": 0o400},
                f"{AGENT_DIR}/secret_id": {"content": v[2], "mode": 0o400},
                SNAPSHOT_DIR: {"directory": True, "mode": 0o750},
            }))
        container = docker.Container(
            f"{name}-agent",
            container_name=f"{prefix}-agent",
            image=args.image,
            command=["python3", f"{AGENT_DIR}/snapshot_agent.py", "--vault-addr", args.vault_address,
                     "--ca-file", f"{AGENT_DIR}/ca.pem", "--role-id-file", f"{AGENT_DIR}/role_id",
                     "--secret-id-file", f"{AGENT_DIR}/secret_id", "--dir", SNAPSHOT_DIR,
                     "--retain", str(args.retain), "--interval", str(args.interval_seconds),
                     "--pushgateway", args.pushgateway_url],
            networks=[{"name": args.network_name}, *([{"name": args.pushgateway_network}]
                                                     if args.pushgateway_network else [])],
            volumes=[{"source": f"{prefix}-data", "target": DATA_DIR},
                     {"source": f"{prefix}-agent", "target": AGENT_DIR}],
            user="100:1000",
            read_only=True,
            files=files,
            labels={**args.labels, "vault-envvars.role": "snapshots"},
            mem_limit="128m",
            docker_host=args.docker_host,
            opts=pulumi.ResourceOptions(parent=self, depends_on=volumes),
        )
        self.volume_name = volumes[0].id
        self.container_name = container.id.apply(lambda _: f"{prefix}-agent")
        self.register_outputs({"volume_name": self.volume_name, "container_name": self.container_name})
