"""Scheduled Raft snapshots on Kubernetes: a CronJob running infra/agents/snapshot_agent.py once per schedule,
with the snapshot-operator AppRole credential from a Secret and the snapshots on a volume claim. A failed
run fails its Job (exit code) and leaves status.json / snapshot.prom on the volume."""
import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from infra.agents import backup_store, snapshot_agent
from infra.kube_meta import annotated
from infra.vault_snapshots_docker import SnapshotStoreArgs

CREDENTIAL_SECRET = "vault-snapshot-approle"  # noqa: S105 (a Secret's name)
STORE_SECRET = "vault-snapshot-store"  # noqa: S105 (a Secret's name): the bucket's credentials and the key


@dataclass
class VaultSnapshotsKubernetesArgs:
    namespace: pulumi.Input[str]
    image: str  # any image with python3
    vault_address: pulumi.Input[str]  # the active Service
    ca_cert_pem: pulumi.Input[str]
    schedule: str = "0 * * * *"
    retain: int = 24
    storage: str = "5Gi"
    storage_class: Optional[str] = None
    # The AppRole credential; None: the Secret is made later (by the configuration phase).
    role_id: Optional[pulumi.Input[str]] = None
    secret_id: Optional[pulumi.Input[str]] = None
    skip_await: bool = False
    # A Prometheus Pushgateway to push each run's gauges to; empty: none.
    pushgateway_url: pulumi.Input[str] = ""
    # An S3-compatible bucket the snapshots go to, encrypted (its image replaces `image`: boto3, cryptography).
    store: Optional[SnapshotStoreArgs] = None


class VaultSnapshotsKubernetes(pulumi.ComponentResource):
    """Outputs: `cronjob_name`, `claim_name`."""

    cronjob_name: pulumi.Output[str]
    claim_name: pulumi.Output[str]

    def __init__(self, name: str, args: VaultSnapshotsKubernetesArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:VaultSnapshotsKubernetes", name, None, opts)
        labels = {"app.kubernetes.io/name": "vault-snapshots", "app.kubernetes.io/part-of": "vault-envvars"}
        annotations = {"pulumi.com/skipAwait": "true"} if args.skip_await else {}

        def meta(obj_name: str) -> dict:
            return {"name": obj_name, "namespace": args.namespace, "labels": labels, **annotated(annotations)}

        child = pulumi.ResourceOptions(parent=self)
        with open(snapshot_agent.__file__) as f:
            agent = f.read()
        store = args.store
        store_data: dict = {}
        store_args: list[str] = []
        if store:
            with open(backup_store.__file__) as f:
                store_data["backup_store.py"] = f.read()
            store_data["store.json"] = json.dumps({
                "bucket": store.bucket, "prefix": store.prefix, "endpoint": store.endpoint, "region": store.region,
                "ca_file": "/agent/store-ca.pem" if store.ca_cert_pem else ""})
            if store.ca_cert_pem:
                store_data["store-ca.pem"] = store.ca_cert_pem
            k8s.core.v1.Secret(f"{name}-store", metadata=meta(STORE_SECRET), type="Opaque", string_data={
                "s3-credentials.json": pulumi.Output.all(store.access_key_id, store.secret_access_key).apply(
                    lambda v: json.dumps({"access_key_id": v[0], "secret_access_key": v[1]})),
                "backup.key": store.encryption_key}, opts=child)
            store_args = ["--store-config", "/agent/store.json", "--store-credentials", "/store/s3-credentials.json",
                          "--key-file", "/store/backup.key", *[a for t in store.tiers for a in ("--tier", t)],
                          *([] if store.local_copy else ["--no-local-copy"])]
        k8s.core.v1.ConfigMap(f"{name}-agent", metadata=meta("vault-snapshot-agent"),
                              data={"snapshot_agent.py": agent, "ca.pem": args.ca_cert_pem, **store_data}, opts=child)
        if args.role_id is not None and args.secret_id is not None:
            k8s.core.v1.Secret(f"{name}-credential", metadata=meta(CREDENTIAL_SECRET), type="Opaque",
                               string_data={"role_id": args.role_id, "secret_id": args.secret_id}, opts=child)
        claim = k8s.core.v1.PersistentVolumeClaim(f"{name}-claim", metadata=meta("vault-snapshots"), spec={
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": args.storage}},
            **({"storageClassName": args.storage_class} if args.storage_class else {}),
        }, opts=child)
        cron = k8s.batch.v1.CronJob(f"{name}-cronjob", metadata=meta("vault-snapshots"), spec={
            "schedule": args.schedule,
            "concurrencyPolicy": "Forbid",
            # A run missed by more than this (the controller was down) is skipped: the next one comes.
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {
                "backoffLimit": 1,
                "activeDeadlineSeconds": 600,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 100, "runAsGroup": 1000,
                                            "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "snapshot",
                            "image": store.image if store else args.image,
                            "command": ["python3", "/agent/snapshot_agent.py", "--vault-addr", args.vault_address,
                                        "--ca-file", "/agent/ca.pem", "--role-id-file", "/credential/role_id",
                                        "--secret-id-file", "/credential/secret_id", "--dir", "/snapshots",
                                        "--retain", str(args.retain), "--interval", "0",
                                        "--pushgateway", args.pushgateway_url, *store_args],
                            "resources": {"requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "16Mi"},
                                          "limits": {"cpu": "500m", "memory": "256Mi",
                                                     "ephemeral-storage": "256Mi"}},
                            "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                                "capabilities": {"drop": ["ALL"]}},
                            "volumeMounts": [
                                {"name": "agent", "mountPath": "/agent", "readOnly": True},
                                {"name": "credential", "mountPath": "/credential", "readOnly": True},
                                {"name": "snapshots", "mountPath": "/snapshots"},
                                *([{"name": "store", "mountPath": "/store", "readOnly": True}] if store else []),
                            ],
                        }],
                        "volumes": [
                            {"name": "agent", "configMap": {"name": "vault-snapshot-agent", "defaultMode": 0o444}},
                            {"name": "credential", "secret": {"secretName": CREDENTIAL_SECRET, "defaultMode": 0o440}},
                            {"name": "snapshots", "persistentVolumeClaim": {"claimName": "vault-snapshots"}},
                            *([{"name": "store", "secret": {"secretName": STORE_SECRET, "defaultMode": 0o440}}]
                              if store else []),
                        ],
                    },
                },
            }},
        }, opts=pulumi.ResourceOptions(parent=self, depends_on=[claim]))
        # The snapshot pods take no connection, and open only these: Vault's API, the Pushgateway, DNS.
        dns = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
        k8s.networking.v1.NetworkPolicy(f"{name}-netpol", metadata=meta("vault-snapshots"), spec={
            "podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress", "Egress"], "ingress": [],
            "egress": [
                {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "vault"}}}],
                 "ports": [{"protocol": "TCP", "port": 8200}]},
                {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "pushgateway"}}}],
                 "ports": [{"protocol": "TCP", "port": 9091}]},
                dns]}, opts=child)
        self.cronjob_name = cron.metadata["name"]
        self.claim_name = claim.metadata["name"]
        self.register_outputs({"cronjob_name": self.cronjob_name, "claim_name": self.claim_name})
