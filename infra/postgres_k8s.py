"""A small PostgreSQL for the service on Kubernetes, where no managed one is given (a local cluster): a
StatefulSet of one pod on a volume claim, a ClusterIP Service and a generated password.

The image is tools/images.sh's (Debian's PostgreSQL; tools/postgres/entrypoint.sh): its first start makes
the cluster with the service's user (no superuser) and database, the password read from a Secret mounted
as a file. Clients authenticate by scram-sha-256, only as that user, only to that database, only from the
given networks (pg_hba.conf); the `postgres` superuser is reachable only through the pod's own socket. A
NetworkPolicy admits only the service's pods. The pod runs as the image's postgres user, read-only root,
no capabilities, no service-account token.

Output: `database_url`, a secret (`postgresql+psycopg://...`, the service's driver)."""
import ipaddress
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote

import pulumi
import pulumi_kubernetes as k8s

from infra.kube_meta import annotated
from infra.providers.random import RandomSecret

# tools/images.sh's PG_IMAGE (Debian bookworm's PostgreSQL major, -rN the image's revision).
DEFAULT_IMAGE = "localhost/vault-envvars/postgres:15-r2"
POSTGRES_UID = 999  # the image's postgres user and group (tools/postgres/install.sh)
PORT = 5432
SERVICE_NAME = "postgres"
HEADLESS_NAME = "postgres-headless"
DATA_DIR = "/var/lib/postgresql/data"
PGDATA = f"{DATA_DIR}/pgdata"  # a folder of the volume: its root may hold lost+found
PASSWORD_DIR = "/run/secrets/postgres"  # noqa: S105 (a folder of the pod)
PRIVATE_NETWORKS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]


@dataclass
class PostgresKubernetesArgs:
    namespace: pulumi.Input[str]
    image: str  # tools/images.sh's localhost/vault-envvars/postgres:<major>-rN
    storage_class: Optional[str] = None  # None: the cluster's default class
    storage: str = "1Gi"
    database: str = "envvars"
    user: str = "envvars"
    # Who may connect: pods with these labels (in `client_namespace`, default this one) by the NetworkPolicy,
    # and these source networks by pg_hba.conf (narrow them to the cluster's pod network when it is known).
    client_labels: dict = field(default_factory=lambda: {"app.kubernetes.io/name": "envvars"})
    client_namespace: Optional[pulumi.Input[str]] = None
    client_cidrs: list = field(default_factory=lambda: list(PRIVATE_NETWORKS))
    resources: dict = field(default_factory=lambda: {
        "requests": {"cpu": "100m", "memory": "256Mi", "ephemeral-storage": "64Mi"},
        "limits": {"cpu": "1", "memory": "512Mi", "ephemeral-storage": "512Mi"}})
    skip_await: bool = False


class PostgresKubernetes(pulumi.ComponentResource):
    """Outputs: `database_url` (a secret), `host` (the Service's DNS name)."""

    database_url: pulumi.Output[str]
    host: pulumi.Output[str]

    def __init__(self, name: str, args: PostgresKubernetesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:PostgresKubernetes", name, None, opts)
        for ident in (args.database, args.user):
            if not ident.isidentifier() or not ident.isascii() or ident != ident.lower() or ident == "postgres":
                raise ValueError(f"{ident!r}: database and user are plain lower-case names other than postgres")
        for cidr in args.client_cidrs:
            if "/" not in cidr:
                raise ValueError(f"{cidr!r}: client_cidrs are networks (a.b.c.d/n)")
            ipaddress.ip_network(cidr)  # raises ValueError on a malformed one
        labels = {"app.kubernetes.io/name": "envvars-postgres", "app.kubernetes.io/part-of": "vault-envvars"}
        annotations = {"pulumi.com/skipAwait": "true"} if args.skip_await else {}

        def meta(obj_name: str) -> dict:
            return {"name": obj_name, "namespace": args.namespace, "labels": labels, **annotated(annotations)}

        child = pulumi.ResourceOptions(parent=self)
        password = RandomSecret(f"{name}-password", length=24, opts=child)  # 32 URL-safe characters
        secret = k8s.core.v1.Secret(f"{name}-credentials", metadata=meta("postgres-credentials"), type="Opaque",
                                    string_data={"password": password.result}, opts=child)
        pg_isready = ["pg_isready", "--host=/run/postgresql", f"--port={PORT}", "--username=postgres",
                      "--dbname=postgres", "--timeout=3"]
        sts = k8s.apps.v1.StatefulSet(f"{name}-sts", metadata=meta("postgres"), spec={
            "replicas": 1,
            "serviceName": HEADLESS_NAME,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,  # no POSTGRES_* variables from the Service in its environment
                    # The image's STOPSIGNAL is SIGINT, a fast shutdown (SIGTERM's smart one would wait for the
                    # service's pooled connections to close); a kill after the grace is a crash recovery at start.
                    "terminationGracePeriodSeconds": 60,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": POSTGRES_UID, "runAsGroup": POSTGRES_UID,
                                        "fsGroup": POSTGRES_UID, "fsGroupChangePolicy": "OnRootMismatch",
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "postgres", "image": args.image, "imagePullPolicy": "IfNotPresent",
                        "ports": [{"name": "postgres", "containerPort": PORT}],
                        "env": [{"name": "PGDATA", "value": PGDATA},
                                {"name": "POSTGRES_DB", "value": args.database},
                                {"name": "POSTGRES_USER", "value": args.user},
                                {"name": "POSTGRES_PASSWORD_FILE", "value": f"{PASSWORD_DIR}/password"},
                                {"name": "POSTGRES_CLIENT_CIDRS", "value": " ".join(args.client_cidrs)}],
                        # Every second until the first answer (initdb, or a crash recovery: up to 5 minutes), then
                        # every 5 s.
                        "startupProbe": {"exec": {"command": pg_isready}, "periodSeconds": 1, "timeoutSeconds": 5,
                                         "failureThreshold": 300},
                        "readinessProbe": {"exec": {"command": pg_isready}, "periodSeconds": 5, "timeoutSeconds": 5,
                                           "failureThreshold": 3},
                        "resources": args.resources,
                        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "data", "mountPath": DATA_DIR},
                                         {"name": "password", "mountPath": PASSWORD_DIR, "readOnly": True},
                                         {"name": "run", "mountPath": "/run/postgresql"},
                                         {"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [
                        {"name": "password", "secret": {"secretName": "postgres-credentials", "defaultMode": 0o440,
                                                        "items": [{"key": "password", "path": "password"}]}},
                        {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data", "labels": labels},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": args.storage}},
                         **({"storageClassName": args.storage_class} if args.storage_class else {})},
            }],
        }, opts=pulumi.ResourceOptions(parent=self, depends_on=[secret]))
        k8s.core.v1.Service(f"{name}-svc", metadata=meta(SERVICE_NAME), spec={
            "type": "ClusterIP", "selector": labels,
            "ports": [{"name": "postgres", "port": PORT, "targetPort": PORT}]}, opts=child)
        # The StatefulSet's governing Service (its pods' DNS names); clients use the ClusterIP one above.
        k8s.core.v1.Service(f"{name}-headless", metadata=meta(HEADLESS_NAME), spec={
            "clusterIP": "None", "selector": labels,
            "ports": [{"name": "postgres", "port": PORT, "targetPort": PORT}]}, opts=child)
        peer: dict = {"podSelector": {"matchLabels": args.client_labels}}
        if args.client_namespace is not None:
            peer["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": args.client_namespace}}
        # PostgreSQL opens no connection of its own: no egress at all.
        k8s.networking.v1.NetworkPolicy(f"{name}-netpol", metadata=meta("postgres"), spec={
            "podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [peer], "ports": [{"protocol": "TCP", "port": PORT}]}], "egress": []}, opts=child)

        self.host = pulumi.Output.from_input(args.namespace).apply(lambda ns: f"{SERVICE_NAME}.{ns}.svc")
        self.database_url = pulumi.Output.secret(pulumi.Output.all(self.host, password.result).apply(
            lambda v: f"postgresql+psycopg://{args.user}:{quote(v[1], safe='')}@{v[0]}:{PORT}/{args.database}"))
        self.statefulset = sts
        self.register_outputs({"database_url": self.database_url, "host": self.host})
