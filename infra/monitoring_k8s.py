"""Prometheus, Alertmanager and a Pushgateway on Kubernetes, from the monitoring image (Debian's packages):
a Deployment and a Service each, their configuration and every monitoring/rules/*.yml in ConfigMaps (the
Alertmanager's in a Secret: its webhook URL may carry a token),
Prometheus' samples on a volume claim; non-root, read-only roots, every capability dropped, no service
account token (nothing here talks to the Kubernetes API). Each service replica is scraped on its own,
through a headless Service whose DNS names every Ready replica.

The Vault pods must admit Prometheus to their API port: from the Vault namespace they do; from another
namespace, VaultKubernetesArgs.prometheus_namespace adds the rule."""
import hashlib
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from infra import monitoring_config as mc
from infra.clients import kube_forward
from infra.kube_meta import annotated

LABELS = {"app.kubernetes.io/part-of": "vault-envvars"}
# The Prometheus pods' label the Vault NetworkPolicy admits from another namespace.
PROMETHEUS_LABELS = {"app.kubernetes.io/name": "prometheus", **LABELS}
SERVICE_METRICS = "envvars-metrics"  # the headless Service over the service's replicas
ROLES = ("prometheus", "alertmanager", "pushgateway")


@dataclass
class MonitoringKubernetesArgs:
    namespace: pulumi.Input[str]  # where the monitoring runs
    image: str
    vault_namespace: str  # the Vault pods' (and the service's)
    vault_pods: list[str]  # vault-0, vault-1, ...
    vault_headless_service: str = "vault-internal"  # the pods' DNS: <pod>.<headless>.<ns>.svc
    vault_ca_pem: pulumi.Input[str] = ""
    service_selector: dict[str, str] = field(default_factory=lambda: {"app.kubernetes.io/name": "envvars"})
    service_port: int = 8080
    routing: mc.AlertRouting = field(default_factory=mc.AlertRouting)
    interval_seconds: int = 10
    retention: str = "15d"
    storage: str = "10Gi"
    storage_class: Optional[str] = None
    skip_await: bool = False


class MonitoringKubernetes(pulumi.ComponentResource):
    """Outputs: `prometheus_url` and `alertmanager_url` (through the Kubernetes API: `k8s://` addresses,
    infra/clients/kube_forward.py), `pushgateway_url` (in the cluster, for the snapshot CronJob)."""

    prometheus_url: pulumi.Output[str]
    alertmanager_url: pulumi.Output[str]
    pushgateway_url: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringKubernetesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:MonitoringKubernetes", name, None, opts)
        annotations = {"pulumi.com/skipAwait": "true"} if args.skip_await else {}
        child = pulumi.ResourceOptions(parent=self)
        namespace = pulumi.Output.from_input(args.namespace)

        def meta(obj_name: str, labels: Optional[dict] = None, ns: pulumi.Input[str] = args.namespace) -> dict:
            return {"name": obj_name, "namespace": ns, "labels": labels or {"app.kubernetes.io/name": obj_name, **LABELS},
                    **annotated(annotations)}

        vault_ns = args.vault_namespace
        prometheus_yml = namespace.apply(lambda ns: mc.prometheus_config(mc.ScrapeTargets(
            vault_nodes=[f"{p}.{args.vault_headless_service}.{vault_ns}.svc:8200" for p in args.vault_pods],
            vault_tls=True, pushgateway=f"pushgateway.{ns}.svc:{mc.PUSHGATEWAY_PORT}",
            alertmanager=f"alertmanager.{ns}.svc:{mc.ALERTMANAGER_PORT}",
            service_dns=(f"{SERVICE_METRICS}.{vault_ns}.svc", args.service_port)),
            interval_seconds=args.interval_seconds))
        alertmanager_yml = mc.alertmanager_config(args.routing)
        rules = mc.rule_files()

        account = k8s.core.v1.ServiceAccount(f"{name}-account", metadata=meta("monitoring"),
                                             automount_service_account_token=False, opts=child)
        prom_config = k8s.core.v1.ConfigMap(f"{name}-prometheus-config", metadata=meta("prometheus-config"), data={
            "prometheus.yml": prometheus_yml, "vault-ca.pem": args.vault_ca_pem}, opts=child)
        rules_map = k8s.core.v1.ConfigMap(f"{name}-prometheus-rules", metadata=meta("prometheus-rules"), data=rules,
                                          opts=child)
        # A Secret: a webhook URL often carries a token.
        am_config = k8s.core.v1.Secret(f"{name}-alertmanager-config", metadata=meta("alertmanager-config"),
                                       type="Opaque", string_data={"alertmanager.yml": pulumi.Output.secret(alertmanager_yml)},
                                       opts=child)
        claim = k8s.core.v1.PersistentVolumeClaim(f"{name}-prometheus-data", metadata=meta("prometheus-data"), spec={
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": args.storage}},
            **({"storageClassName": args.storage_class} if args.storage_class else {}),
        }, opts=child)
        # The service's replicas, each its own target (a ClusterIP Service would hand Prometheus one at random).
        # Never awaited: its endpoints are the service's pods, which another component (or nothing) makes.
        k8s.core.v1.Service(f"{name}-service-metrics", metadata={
            **meta(SERVICE_METRICS, ns=vault_ns), "annotations": {"pulumi.com/skipAwait": "true"}}, spec={
            "clusterIP": "None", "selector": args.service_selector,
            "ports": [{"name": "http", "port": args.service_port, "targetPort": args.service_port}]}, opts=child)

        # Prometheus reads its configuration and rules at start: a change rolls the pod.
        checksum = pulumi.Output.all(prometheus_yml, args.vault_ca_pem).apply(
            lambda v: hashlib.sha256("\0".join([*v, *rules.values()]).encode()).hexdigest())
        self._deployment(name, args, "prometheus", [
            "prometheus", f"--config.file={mc.CONFIG_DIR}/prometheus.yml", f"--storage.tsdb.path={mc.PROMETHEUS_DATA}",
            f"--storage.tsdb.retention.time={args.retention}", f"--web.listen-address=:{mc.PROMETHEUS_PORT}"],
            mc.PROMETHEUS_PORT, checksum,
            mounts=[("config", mc.CONFIG_DIR, {"configMap": {"name": "prometheus-config", "defaultMode": 0o444}}),
                    ("rules", mc.RULES_MOUNT, {"configMap": {"name": "prometheus-rules", "defaultMode": 0o444}}),
                    ("data", mc.PROMETHEUS_DATA, {"persistentVolumeClaim": {"claimName": "prometheus-data"}})],
            resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            meta=meta, depends_on=[account, prom_config, rules_map, claim])
        self._deployment(name, args, "alertmanager", [
            "prometheus-alertmanager", f"--config.file={mc.CONFIG_DIR}/alertmanager.yml",
            f"--storage.path={mc.ALERTMANAGER_DATA}", f"--web.listen-address=:{mc.ALERTMANAGER_PORT}",
            "--cluster.listen-address="],  # one replica: no gossip port
            mc.ALERTMANAGER_PORT, pulumi.Output.secret(hashlib.sha256(alertmanager_yml.encode()).hexdigest()),
            mounts=[("config", mc.CONFIG_DIR, {"secret": {"secretName": "alertmanager-config", "defaultMode": 0o440}}),
                    ("data", mc.ALERTMANAGER_DATA, {"emptyDir": {"sizeLimit": "64Mi"}})],
            resources={"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
            meta=meta, depends_on=[account, am_config])
        self._deployment(name, args, "pushgateway", [
            "prometheus-pushgateway", f"--web.listen-address=:{mc.PUSHGATEWAY_PORT}",
            f"--persistence.file={mc.PUSHGATEWAY_DATA}/metrics"],
            mc.PUSHGATEWAY_PORT, "",
            mounts=[("data", mc.PUSHGATEWAY_DATA, {"emptyDir": {"sizeLimit": "16Mi"}})],
            resources={"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
            meta=meta, depends_on=[account])

        # Untrusted jobs run in another namespace: one that reached the Alertmanager could silence every
        # alert, one that reached the Pushgateway could report a snapshot that never happened. Only the
        # monitoring's own namespace (Prometheus) and the Vault namespace (the snapshot CronJob, the
        # service) may connect to the three.
        k8s.networking.v1.NetworkPolicy(f"{name}-netpol", metadata=meta("monitoring"), spec={
            "podSelector": {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In",
                                                  "values": list(ROLES)}]},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {}},
                                  {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": vault_ns}}}]}],
        }, opts=child)
        # The Pushgateway only answers: it opens no connection.
        k8s.networking.v1.NetworkPolicy(f"{name}-pushgateway-netpol", metadata=meta("pushgateway-egress"), spec={
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "pushgateway"}}, "policyTypes": ["Egress"],
            "egress": []}, opts=child)

        self.prometheus_url = namespace.apply(
            lambda ns: kube_forward.service_address(ns, "prometheus", mc.PROMETHEUS_PORT))
        self.alertmanager_url = namespace.apply(
            lambda ns: kube_forward.service_address(ns, "alertmanager", mc.ALERTMANAGER_PORT))
        self.pushgateway_url = namespace.apply(lambda ns: f"http://pushgateway.{ns}.svc:{mc.PUSHGATEWAY_PORT}")
        self.register_outputs({"prometheus_url": self.prometheus_url, "alertmanager_url": self.alertmanager_url,
                               "pushgateway_url": self.pushgateway_url})

    def _deployment(self, name: str, args: MonitoringKubernetesArgs, role: str, command: list[str], port: int,
                    checksum: pulumi.Input[str], *, mounts: list[tuple[str, str, dict]], resources: dict,
                    meta, depends_on: list[pulumi.Resource]) -> None:
        labels = {"app.kubernetes.io/name": role, **LABELS}
        probe = lambda path, **t: {"httpGet": {"path": path, "port": port}, **t}  # noqa: E731
        k8s.apps.v1.Deployment(f"{name}-{role}", metadata=meta(role, labels), spec={
            "replicas": 1,
            "selector": {"matchLabels": labels},
            # One writer of its volume: the old pod goes before the new one starts.
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": labels,
                             **({"annotations": {"vault-envvars/config-checksum": checksum}} if checksum else {})},
                "spec": {
                    "serviceAccountName": "monitoring", "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": mc.UID, "runAsGroup": mc.GID,
                                        "fsGroup": mc.GID, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": role, "image": args.image, "imagePullPolicy": "IfNotPresent", "command": command,
                        "ports": [{"name": "http", "containerPort": port}],
                        "readinessProbe": probe("/-/ready", periodSeconds=5),
                        "livenessProbe": probe("/-/healthy", initialDelaySeconds=30, periodSeconds=15),
                        # Writable layer and logs bounded (data sits on a volume or a sized emptyDir).
                        "resources": {"requests": {**resources["requests"], "ephemeral-storage": "16Mi"},
                                      "limits": {**resources["limits"], "ephemeral-storage": "256Mi"}},
                        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}},
                        # Configuration (ConfigMaps, Secrets) read-only; data volumes writable.
                        "volumeMounts": [{"name": v, "mountPath": path,
                                          **({} if {"emptyDir", "persistentVolumeClaim"} & set(src) else {"readOnly": True})}
                                         for v, path, src in mounts],
                    }],
                    "volumes": [{"name": v, **src} for v, _, src in mounts],
                },
            },
        }, opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on))
        k8s.core.v1.Service(f"{name}-{role}-svc", metadata=meta(role, labels), spec={
            "selector": labels, "ports": [{"name": "http", "port": port, "targetPort": port}]},
            opts=pulumi.ResourceOptions(parent=self))
