"""The scheduled restore check beside a dev Raft cluster on the local engine: a container running
infra/agents/restore_check.py on an interval (daily by default). It restores the newest snapshot and database
backup from the bucket into a throwaway OpenBao inside itself (tmpfs only) and pushes its gauges to the
stack's Pushgateway."""
import json
import os
from dataclasses import dataclass, field
from typing import Optional

import pulumi

from infra.agents import backup_store, restore_check, snapshot_agent
from infra.providers import docker
from infra.server_paths import AUDIT_LOG
from infra.vault_snapshots_docker import SnapshotStoreArgs, _store_files

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT_DIR = "/agent"


@dataclass
class RestoreCheckDockerArgs:
    service_image: pulumi.Input[str]  # boto3, cryptography and the service's drift check
    bao_image: str  # its /usr/local/bin/bao runs the throwaway server
    network_name: pulumi.Input[str]
    vault_address: pulumi.Input[str]  # the live cluster, as containers on that network reach it
    ca_cert_pem: pulumi.Input[str]
    unseal_keys: pulumi.Input[list]  # the source cluster's: a restored snapshot opens with these only
    role_id: pulumi.Input[str]  # the executor AppRole (values are read and the drift check runs with it)
    secret_id: pulumi.Input[str]
    store: SnapshotStoreArgs
    interval_seconds: int = 86400
    rpo_limit_seconds: int = 7200
    pushgateway_url: pulumi.Input[str] = ""
    pushgateway_network: pulumi.Input[str] = ""
    labels: dict[str, str] = field(default_factory=dict)
    docker_host: Optional[str] = None


class RestoreCheckDocker(pulumi.ComponentResource):
    """Outputs: `container_name`."""

    container_name: pulumi.Output[str]

    def __init__(self, name: str, args: RestoreCheckDockerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:RestoreCheckDocker", name, None, opts)
        if args.interval_seconds < 60:
            raise ValueError("the restore check needs an interval of at least 60 s")
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}-{name}"
        image = docker.Image(
            f"{name}-image", tag=f"localhost/vault-envvars/restore-check:{pulumi.get_stack()}", context=REPO_ROOT,
            dockerfile="infra/restore_check.Dockerfile", digest_paths=["infra/restore_check.Dockerfile"],
            build_args={"SERVICE_IMAGE": args.service_image, "BAO_IMAGE": args.bao_image},  # type: ignore[dict-item]
            docker_host=args.docker_host, opts=child)
        store = args.store
        scripts = {}
        for module in (restore_check, snapshot_agent, backup_store):
            with open(module.__file__ or "") as f:
                scripts[f"{AGENT_DIR}/{os.path.basename(module.__file__ or '')}"] = {"content": f.read(), "mode": 0o444}
        # mypy cannot carry Output.secret's type through apply's lambda.
        files = pulumi.Output.secret(pulumi.Output.all(  # type: ignore[arg-type,var-annotated]
            args.ca_cert_pem, args.unseal_keys, args.role_id, args.secret_id, store.access_key_id,
            store.secret_access_key, store.encryption_key).apply(lambda v: {
                **scripts,
                f"{AGENT_DIR}/ca.pem": {"content": v[0], "mode": 0o444},
                f"{AGENT_DIR}/unseal-keys.json": {"content": json.dumps(v[1]), "mode": 0o400},
                f"{AGENT_DIR}/role_id": {"content": v[2], "mode": 0o400},
                f"{AGENT_DIR}/secret_id": {"content": v[3], "mode": 0o400},
                **_store_files(store, v[4], v[5], v[6]),
            }))
        volume = docker.Volume(f"{name}-agent", volume_name=f"{prefix}-agent", labels=args.labels,
                               docker_host=args.docker_host, opts=child)
        container = docker.Container(
            f"{name}-agent", container_name=f"{prefix}-agent", image=image.image_id,
            command=[f"{AGENT_DIR}/restore_check.py", "--store-config", f"{AGENT_DIR}/store.json",
                     "--store-credentials", f"{AGENT_DIR}/s3-credentials.json", "--key-file", f"{AGENT_DIR}/backup.key",
                     "--bao", "/usr/local/bin/bao", "--unseal-keys-file", f"{AGENT_DIR}/unseal-keys.json",
                     "--role-id-file", f"{AGENT_DIR}/role_id", "--secret-id-file", f"{AGENT_DIR}/secret_id",
                     "--live-vault-addr", args.vault_address, "--live-ca-file", f"{AGENT_DIR}/ca.pem",
                     "--audit-file-path", AUDIT_LOG, "--workdir", "/work", "--dir", "/work",
                     "--interval", str(args.interval_seconds), "--rpo-limit", str(args.rpo_limit_seconds),
                     "--initial-wait", "600", "--pushgateway", args.pushgateway_url,
                     *([] if store.sqlite_volume else ["--no-database"])],
            networks=[{"name": args.network_name}, *([{"name": args.pushgateway_network}]
                                                     if args.pushgateway_network else []),
                      *([{"name": store.network}] if store.network else [])],
            volumes=[{"source": f"{prefix}-agent", "target": AGENT_DIR}],
            # The throwaway server's Raft data and the restored database live in memory only.
            read_only=True, tmpfs={"/work": "rw,mode=1777,size=512m", "/bao": "rw,mode=1777,size=64m",
                                   "/tmp": "rw,mode=1777,size=64m"},
            user="100:1000", files=files, env={"HOME": "/work"},
            labels={**args.labels, "vault-envvars.role": "restore-check"}, mem_limit="768m",
            docker_host=args.docker_host, opts=pulumi.ResourceOptions(parent=self, depends_on=[volume]))
        self.container_name = container.id.apply(lambda _: f"{prefix}-agent")
        self.register_outputs({"container_name": self.container_name})
