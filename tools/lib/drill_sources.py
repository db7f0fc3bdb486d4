"""Where the restore drill (tools/drill.py) takes a stack's snapshot credential, database backup and
executor credential from, and where it stands up a throwaway cluster to restore into (`Source`):

DockerSource: a dev-raft stack on the container engine: the service's SQLite database and AppRole secret id
from its container, a throwaway cluster of containers.
KubeSource: a prod stack on Kubernetes: its credentials from its Secrets, its PostgreSQL database dumped
(`pg_dump` in its pod) and its env_vars rows copied into SQLite for the service's drift check, and a
throwaway cluster that is the stack's own Vault component (same image, storage class and sizes) in a fresh
namespace, destroyed after. Everything goes through the Kubernetes API with the stack's kubeconfig: exec,
port-forwards, Secrets."""
import base64
import datetime
import io
import json
import os
import re
import secrets
import sqlite3
import tarfile
from typing import Callable, Optional, Protocol

import docker
import pulumi
import pulumi_kubernetes as k8s
from kubernetes import client
from pulumi import automation as auto
from sqlalchemy import DateTime, insert
from sqlalchemy.engine import make_url

from infra.clients import kube_forward
from infra.vault_k8s import VaultKubernetes, VaultKubernetesArgs
from infra.vault_raft_docker import VaultRaftDocker, VaultRaftDockerArgs
from infra.vault_seal import STATIC_KEY, StaticSealArgs
from infra.vault_snapshots_k8s import CREDENTIAL_SECRET
from service.db import EnvVar, make_engine, migrate
from tools.lib.kube_nodes import pod_exec
from tools.lib.stack_outputs import Out
from tools.lib.throwaway import ThrowawayStack, private_backend

SERVICE_SECRET, POSTGRES_POD = "envvars-credentials", "postgres-0"  # noqa: S105 (names)


class Source(Protocol):
    """Where the drill takes its snapshot credential, database backup and executor credential from, and
    where it stands up a throwaway cluster (nodes' addresses, CA)."""

    def snapshot_credential(self) -> tuple[str, str]: ...
    def backup_database(self, work: str) -> tuple[set[str], str]: ...
    def executor_secret_id(self) -> str: ...
    def throwaway_cluster(self, work: str) -> tuple[auto.Stack, list[str], str]: ...


def throwaway_cluster(work: str, program: Callable[[], None]) -> tuple[auto.Stack, list[str], str]:
    """Runs `program` (exporting `nodes` and `ca`) as a stack of its own in `work`; returns it and them."""
    stack = ThrowawayStack(work, private_backend(work), program=program, project_name="vault-envvars-drill",
                           name=f"drill-{secrets.token_hex(3)}")
    out = stack.up()
    return stack.stack, out.outputs["nodes"].value, out.outputs["ca"].value


class DockerSource:
    """A dev-raft stack on the container engine: the service's SQLite database and AppRole secret id from
    its container, a throwaway cluster of containers."""

    def __init__(self, outputs: dict, image: str, engine: docker.DockerClient):
        self.outputs, self.image, self.engine = outputs, image, engine
        self._container = engine.containers.get(outputs[Out.SERVICE_CONTAINER])

    def snapshot_credential(self) -> tuple[str, str]:
        return self.outputs[Out.SNAPSHOT_ROLE_ID], self.outputs[Out.SNAPSHOT_SECRET_ID]

    def backup_database(self, work: str) -> tuple[set[str], str]:
        """An online SQLite backup taken inside the service container, copied out through the API; its
        rows ("owner/id") and a database URL of the copy."""
        inside = "/tmp/drill-backup.db"  # noqa: S108 (the container's own private /tmp)
        code, out = self._container.exec_run(["python3", "-c", "import sqlite3; s=sqlite3.connect('/data/envvars.db'); "
                                              f"d=sqlite3.connect('{inside}'); s.backup(d); d.close()"])
        if code != 0:
            raise RuntimeError(f"database backup failed: {out.decode()[:200]}")
        stream, _ = self._container.get_archive(inside)
        path = os.path.join(work, "envvars.db")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            with open(path, "wb") as f:
                member = tar.extractfile("drill-backup.db")
                if member is None:
                    raise RuntimeError("the database backup is missing from the container's archive")
                f.write(member.read())
        self._container.exec_run(["rm", "-f", inside])
        with sqlite3.connect(path) as db:
            rows = {f"{owner}/{env_id}" for owner, env_id in db.execute("select owner, id from env_vars")}
        return rows, f"sqlite:///{path}"

    def executor_secret_id(self) -> str:
        """The service's AppRole secret id, read from its 0400 file into this process's memory only."""
        code, out = self._container.exec_run(["cat", "/run/envvars/approle-secret-id"])
        if code != 0:
            raise RuntimeError("cannot read the service's AppRole secret id")
        return out.decode().strip()

    def throwaway_cluster(self, work: str) -> tuple[auto.Stack, list[str], str]:
        image = self.image

        def program():
            cluster = VaultRaftDocker("drill", VaultRaftDockerArgs(image=image, labels={"vault-envvars.drill": "1"}))
            pulumi.export("nodes", cluster.node_addresses)
            pulumi.export("ca", cluster.ca_cert_pem)

        return throwaway_cluster(work, program)


class KubeSource:
    """A prod stack on Kubernetes (see the module's doc)."""

    def __init__(self, outputs: dict, kubeconfig: Optional[str], statefulset: str = "vault"):
        self.namespace, self.kubeconfig = outputs[Out.NAMESPACE], kubeconfig
        api = kube_forward.api_client()
        self.core = client.CoreV1Api(api)
        sts = client.AppsV1Api(api).read_namespaced_stateful_set(statefulset, self.namespace)
        container = sts.spec.template.spec.containers[0]
        self.image, self.flavor = container.image, "openbao" if container.command[0] == "bao" else "vault"
        claims = {t.metadata.name: t.spec for t in sts.spec.volume_claim_templates}
        self.storage_class = claims["data"].storage_class_name
        self.sizes = {name: spec.resources.requests["storage"] for name, spec in claims.items()}
        # An auto-sealed source's snapshot opens only under the same seal: its static key goes along.
        seal = next((v.secret.secret_name for v in sts.spec.template.spec.volumes or [] if v.name == "seal"), None)
        hcl = self.core.read_namespaced_config_map(f"{statefulset}-config", self.namespace).data["server.hcl"]
        if 'seal "transit"' in hcl:
            raise RuntimeError("the restore drill of a transit-sealed stack is not automated: its throwaway cluster "
                               "would need a token of the transit server (restore by hand: docs/runbook-restore.md)")
        self.static_seal: Optional[StaticSealArgs] = None
        if seal:
            key_id = re.search(r'current_key_id = "([^"]*)"', hcl)
            self.static_seal = StaticSealArgs(secret_name=seal, key_id=key_id.group(1) if key_id else "1")

    def _secret(self, name: str, key: str) -> str:
        data = self.core.read_namespaced_secret(name, self.namespace).data or {}
        if key not in data:
            raise RuntimeError(f"Secret {self.namespace}/{name} has no key {key}")
        return base64.b64decode(data[key]).decode()

    def snapshot_credential(self) -> tuple[str, str]:
        """The snapshot CronJob's own AppRole credential."""
        return self._secret(CREDENTIAL_SECRET, "role_id"), self._secret(CREDENTIAL_SECRET, "secret_id")

    def executor_secret_id(self) -> str:
        return self._secret(SERVICE_SECRET, "approle-secret-id")

    def backup_database(self, work: str) -> tuple[set[str], str]:
        """`pg_dump` of the service's database in the PostgreSQL pod (saved in `work`: the backup), and its
        env_vars rows copied into a SQLite database of the service's own schema for the drift check (the
        server admits the service's role only to its own database from the pod network, so a scratch copy
        on that server could not be reached from here). The rows ("owner/id") and the copy's URL."""
        database = str(make_url(self._secret(SERVICE_SECRET, "database-url")).database)
        dump = self._in_postgres(["pg_dump", "--username=postgres", "--no-owner", "--no-privileges", "--inserts",
                                  database])
        with open(os.path.join(work, "envvars.sql"), "w") as f:
            f.write(dump)
        table = json.loads(self._in_postgres(["psql", "--username=postgres", "--no-psqlrc", "-At", "-d", database,
                                              "-c", "SELECT coalesce(json_agg(e), '[]') FROM env_vars e"]))
        copy = f"sqlite:///{os.path.join(work, 'envvars-check.db')}"
        migrate(copy)
        columns = EnvVar.__table__.columns
        typed = [{k: datetime.datetime.fromisoformat(v) if v and isinstance(columns[k].type, DateTime) else v
                  for k, v in row.items()} for row in table]
        if typed:
            with make_engine(copy).begin() as db:
                db.execute(insert(EnvVar), typed)
        return {f"{row['owner']}/{row['id']}" for row in table}, copy

    def _in_postgres(self, command: list[str]) -> str:
        code, out, err = pod_exec(self.core, self.namespace, POSTGRES_POD, command)
        if code != 0:
            raise RuntimeError(f"{command[0]} in {POSTGRES_POD} failed: {err.strip()[:200]}")
        return out

    def throwaway_cluster(self, work: str) -> tuple[auto.Stack, list[str], str]:
        namespace = f"drill-{secrets.token_hex(3)}"
        args = VaultKubernetesArgs(namespace=namespace, image=self.image, flavor=self.flavor,
                                   storage_class=self.storage_class, data_storage=self.sizes["data"],
                                   audit_storage=self.sizes["audit"], seal=self.static_seal)
        kubeconfig = self.kubeconfig
        seal_name = self.static_seal.secret_name if self.static_seal else ""
        seal_key = self._secret(seal_name, STATIC_KEY) if seal_name else ""

        def program():
            provider = k8s.Provider("k8s", kubeconfig=kubeconfig)
            opts = pulumi.ResourceOptions(provider=provider)
            ns = k8s.core.v1.Namespace("drill-namespace", metadata={
                "name": namespace, "labels": {"app.kubernetes.io/part-of": "vault-envvars"}}, opts=opts)
            # The source's static key, in the drill's namespace: a Pulumi secret in the drill's own state.
            seal = [k8s.core.v1.Secret("drill-seal-key", metadata={"name": seal_name, "namespace": namespace},
                                       string_data={STATIC_KEY: pulumi.Output.secret(seal_key)},
                                       opts=pulumi.ResourceOptions(provider=provider, depends_on=[ns]))] if seal_key else []
            cluster = VaultKubernetes("drill", args, opts=pulumi.ResourceOptions(provider=provider,
                                                                               depends_on=[ns, *seal]))
            pulumi.export("nodes", cluster.node_addresses)
            pulumi.export("ca", cluster.ca_cert_pem)

        return throwaway_cluster(work, program)
