"""Scheduled Raft snapshots beside a Vault cluster on the local engine: a container running
infra/agents/snapshot_agent.py on an interval, snapshots on a volume of their own and, with a store, encrypted
in an S3-compatible bucket together with the service's SQLite database."""
import json
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi

from infra.agents import backup_store, snapshot_agent
from infra.providers import docker

AGENT_DIR = "/agent"
DATA_DIR = "/data"
SNAPSHOT_DIR = f"{DATA_DIR}/snapshots"
SERVICE_DATA_DIR = "/service-data"


@dataclass
class SnapshotStoreArgs:
    """An S3-compatible bucket for the snapshots (infra/agents/backup_store.py)."""

    image: pulumi.Input[str]  # with boto3 and cryptography: the service's image
    bucket: str
    access_key_id: pulumi.Input[str]  # secrets
    secret_access_key: pulumi.Input[str]
    encryption_key: pulumi.Input[str]  # 32 bytes in base64; never in the bucket
    tiers: list[str]  # the agent's --tier PERIOD:COUNT values
    prefix: str = ""
    endpoint: str = ""
    region: str = "us-east-1"
    ca_cert_pem: str = ""
    local_copy: bool = True
    network: str = ""  # an engine network to join to reach the endpoint (a private S3 server beside the stack)
    # The service's data volume: its SQLite database (envvars.db) is backed up on the same schedule too.
    sqlite_volume: pulumi.Input[str] = ""


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
    store: Optional[SnapshotStoreArgs] = None
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
        store = args.store
        # mypy cannot carry Output.secret's type through apply's lambda.
        files = pulumi.Output.secret(pulumi.Output.all(  # type: ignore[arg-type,var-annotated]
            args.ca_cert_pem, args.role_id, args.secret_id,
            *((store.access_key_id, store.secret_access_key, store.encryption_key) if store else ())).apply(
            lambda v: {
                f"{AGENT_DIR}/snapshot_agent.py": {"content": agent, "mode": 0o500},
                f"{AGENT_DIR}/ca.pem": {"content": v[0], "mode": 0o444},
                f"{AGENT_DIR}/role_id": {"content": v[1], "mode": 0o400},
                f"{AGENT_DIR}/secret_id": {"content": v[2], "mode": 0o400},
                SNAPSHOT_DIR: {"directory": True, "mode": 0o750},
                **(_store_files(store, v[3], v[4], v[5]) if store else {}),
            }))
        command = [f"{AGENT_DIR}/snapshot_agent.py", "--vault-addr", args.vault_address,
                   "--ca-file", f"{AGENT_DIR}/ca.pem", "--role-id-file", f"{AGENT_DIR}/role_id",
                   "--secret-id-file", f"{AGENT_DIR}/secret_id", "--dir", SNAPSHOT_DIR,
                   "--retain", str(args.retain), "--interval", str(args.interval_seconds),
                   "--pushgateway", args.pushgateway_url]
        mounts: list[dict[str, Any]] = [{"source": f"{prefix}-data", "target": DATA_DIR},
                                        {"source": f"{prefix}-agent", "target": AGENT_DIR}]
        user = "100:1000"
        if store:
            command += ["--store-config", f"{AGENT_DIR}/store.json", "--store-credentials",
                        f"{AGENT_DIR}/s3-credentials.json", "--key-file", f"{AGENT_DIR}/backup.key",
                        *[a for t in store.tiers for a in ("--tier", t)],
                        *([] if store.local_copy else ["--no-local-copy"])]
            if store.sqlite_volume:
                command += ["--sqlite-file", f"{SERVICE_DATA_DIR}/envvars.db"]
                mounts.append({"source": store.sqlite_volume, "target": SERVICE_DATA_DIR})
                # The service's uid: the owner of its 0700 data folder, so no capability is needed to read it.
                user = "0:0"
        container = docker.Container(
            f"{name}-agent",
            container_name=f"{prefix}-agent",
            image=store.image if store else args.image,
            # The service image's entrypoint is the service: the agent runs on its python (boto3, cryptography).
            entrypoint=["python3"],
            command=command,
            networks=[{"name": args.network_name}, *([{"name": args.pushgateway_network}]
                                                     if args.pushgateway_network else []),
                      *([{"name": store.network}] if store and store.network else [])],
            volumes=mounts,
            user=user,
            cap_drop=["ALL"],
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


def _store_files(store: SnapshotStoreArgs, access_key_id: str, secret_access_key: str, key: str) -> dict:
    config = {"bucket": store.bucket, "prefix": store.prefix, "endpoint": store.endpoint, "region": store.region,
              "ca_file": f"{AGENT_DIR}/store-ca.pem" if store.ca_cert_pem else ""}
    with open(backup_store.__file__) as f:
        module = f.read()
    return {
        f"{AGENT_DIR}/backup_store.py": {"content": module, "mode": 0o444},
        f"{AGENT_DIR}/store.json": {"content": json.dumps(config), "mode": 0o444},
        f"{AGENT_DIR}/s3-credentials.json": {"content": json.dumps(
            {"access_key_id": access_key_id, "secret_access_key": secret_access_key}), "mode": 0o400},
        f"{AGENT_DIR}/backup.key": {"content": key, "mode": 0o400},
        **({f"{AGENT_DIR}/store-ca.pem": {"content": store.ca_cert_pem, "mode": 0o444}} if store.ca_cert_pem else {}),
    }
