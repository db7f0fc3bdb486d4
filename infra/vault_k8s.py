"""Vault/OpenBao as an HA Raft cluster on Kubernetes, with the defaults an operator expects in production.

StatefulSet (3 by default) with integrated Raft and `retry_join`; TLS on the API and cluster ports from a
Secret (its own CA and a certificate for its own names, or a given Secret); required pod anti-affinity; a
PodDisruptionBudget; readiness = unsealed and serving, liveness that never kills a sealed or standby pod;
OnDelete updates; a pre-stop delay; non-root, read-only containers; headless, active and standby
Services; a ServiceAccount with the RBAC that service registration needs; a NetworkPolicy; requests and
limits; Prometheus telemetry; audit volumes; the seal (infra/vault_seal.py: Shamir, static or transit).
"""
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from infra.clients import kube_forward
from infra.kube_meta import annotated
from infra.providers.tls import TlsBundle
from infra.server_config import RaftServerConfig
from infra.server_paths import CONFIG_DIR, DATA_DIR, LOGS_DIR, SERVER_HCL, TLS_DIR
from infra.vault_seal import SealArgs, StaticSealArgs, StaticSealKey, TransitSealArgs  # noqa: F401 (re-exported)

API_PORT, CLUSTER_PORT = 8200, 8201


def internal_address(namespace: str, name: str = "vault") -> str:
    """The active node's API as clients in the cluster reach it (the `<name>-active` Service)."""
    return f"https://{name}-active.{namespace}.svc:{API_PORT}"
UID, GID = 100, 1000


@dataclass(frozen=True)
class TlsSecretArgs:
    """An existing Secret with the keys ca.pem, tls.crt and tls.key, and the CA of its certificate."""

    name: str
    ca_cert_pem: str


@dataclass(frozen=True)
class ContainerResources:
    cpu_request: str = "250m"
    memory_request: str = "256Mi"
    cpu_limit: str = "1"
    memory_limit: str = "512Mi"
    # The container's writable layer and logs (data and audit sit on volumes): bounded, so a runaway log
    # evicts this pod rather than filling the node.
    ephemeral_request: str = "64Mi"
    ephemeral_limit: str = "1Gi"

    def spec(self) -> dict:
        return {"requests": {"cpu": self.cpu_request, "memory": self.memory_request,
                             "ephemeral-storage": self.ephemeral_request},
                "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit,
                           "ephemeral-storage": self.ephemeral_limit}}


@dataclass
class VaultKubernetesArgs:
    namespace: pulumi.Input[str]
    image: str
    # None: the component makes a CA and a certificate for its own Service and pod names.
    tls_secret: Optional[TlsSecretArgs] = None
    replicas: int = 3
    flavor: str = "openbao"
    name: str = "vault"
    data_storage: str = "10Gi"
    audit_storage: str = "10Gi"
    storage_class: Optional[str] = None
    resources: ContainerResources = field(default_factory=ContainerResources)
    # None: Shamir keys. An auto seal (infra/vault_seal.py) lets every pod unseal itself at start.
    seal: Optional[SealArgs] = None
    # The static seal's key made by the stack (a Pulumi secret) when no Secret of the operator's is named.
    generate_static_key: bool = False
    # Namespaces whose pods may call the API (8200); the cluster port only ever talks to peers.
    client_namespaces: list[str] = field(default_factory=list)
    # A namespace other than the Vault one whose Prometheus pods (app.kubernetes.io/name=prometheus) scrape
    # the API port's /v1/sys/metrics; pods of the Vault namespace are admitted anyway.
    prometheus_namespace: str = ""
    # Each pod's API as this machine reaches it (port-forwards, per-pod ingress), in pod order; empty:
    # through the Kubernetes API (`k8s://` addresses, infra/clients/kube_forward.py), needing only the kubeconfig.
    host_addresses: list[str] = field(default_factory=list)
    # Test API servers run no controllers: skip pulumi-kubernetes' readiness waits there.
    skip_await: bool = False


class VaultKubernetes(pulumi.ComponentResource):
    """Outputs, the clusters' shape: `host_address` and `node_addresses` (the API as this machine reaches
    it: from `host_addresses`, the first pod's and every pod's; without them, through the Kubernetes API,
    the active Service's (`k8s://<ns>/svc/<name>-active:8200`) and every pod's (`k8s://<ns>/<name>-<i>:8200`)),
    `internal_address` (the active Service, for clients in the cluster), `ca_cert_pem`; and `statefulset_name`."""

    host_address: pulumi.Output[str]
    node_addresses: pulumi.Output[list]
    internal_address: pulumi.Output[str]
    ca_cert_pem: pulumi.Output[str]
    statefulset_name: pulumi.Output[str]

    def __init__(self, name: str, args: VaultKubernetesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:VaultKubernetes", name, None, opts)
        if args.replicas < 3 or args.replicas % 2 == 0:
            raise ValueError(f"a Raft cluster needs an odd number of replicas, at least 3 (got {args.replicas})")
        if args.host_addresses and len(args.host_addresses) != args.replicas:
            raise ValueError(f"host_addresses lists {len(args.host_addresses)} pods; give one per replica "
                             f"({args.replicas}), in pod order")
        self._name, self._args, n = name, args, args.name
        self._labels = {"app.kubernetes.io/name": n, "app.kubernetes.io/instance": n,
                        "app.kubernetes.io/part-of": "vault-envvars"}
        self._annotations = {"pulumi.com/skipAwait": "true"} if args.skip_await else {}
        self._child = pulumi.ResourceOptions(parent=self)
        self._headless = f"{n}-internal"
        # The label service registration puts on each pod: OpenBao names its labels openbao-*.
        self._active_label = "openbao-active" if args.flavor == "openbao" else "vault-active"
        self._pods = [f"{n}-{i}" for i in range(args.replicas)]

        sa = self._service_account()
        tls_secret, tls_objects = self._tls()
        config = self._server_config()
        seal_objects = self._seal_key()
        self._services()
        self._disruption_budget_and_network_policy()
        self.statefulset = self._statefulset(tls_secret, depends_on=[config, sa, *tls_objects, *seal_objects])

        if args.host_addresses:
            self.host_address = pulumi.Output.from_input(args.host_addresses[0])
            self.node_addresses = pulumi.Output.from_input(args.host_addresses)
        else:
            namespace = pulumi.Output.from_input(args.namespace)
            self.host_address = namespace.apply(lambda ns: kube_forward.service_address(ns, f"{n}-active", API_PORT))
            self.node_addresses = namespace.apply(
                lambda ns: [kube_forward.pod_address(ns, p, API_PORT) for p in self._pods])
        self.internal_address = pulumi.Output.from_input(args.namespace).apply(
            lambda ns: internal_address(ns, n))
        self.statefulset_name = self.statefulset.metadata["name"]
        self.register_outputs({"host_address": self.host_address, "node_addresses": self.node_addresses,
                               "internal_address": self.internal_address, "ca_cert_pem": self.ca_cert_pem,
                               "statefulset_name": self.statefulset_name})

    def _meta(self, obj_name: str, skip_await: bool = False) -> dict:
        annotations = {**self._annotations, **({"pulumi.com/skipAwait": "true"} if skip_await else {})}
        return {"name": obj_name, "namespace": self._args.namespace, "labels": self._labels,
                **annotated(annotations)}

    def _service_account(self) -> k8s.core.v1.ServiceAccount:
        name, n = self._name, self._args.name
        sa = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=self._meta(n), automount_service_account_token=True,
                                        opts=self._child)
        # Service registration labels its own pod (openbao-active / vault-active, ...-sealed...): get and
        # patch pods only.
        role = k8s.rbac.v1.Role(f"{name}-discovery", metadata=self._meta(f"{n}-discovery"), rules=[
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "update", "patch"]}], opts=self._child)
        k8s.rbac.v1.RoleBinding(f"{name}-discovery", metadata=self._meta(f"{n}-discovery"),
                                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                          "name": f"{n}-discovery"},
                                subjects=[{"kind": "ServiceAccount", "name": n, "namespace": self._args.namespace}],
                                opts=pulumi.ResourceOptions(parent=self, depends_on=[role, sa]))
        return sa

    def _tls(self) -> tuple[str, list[pulumi.Resource]]:
        """The TLS Secret's name and the resources that make it; sets `ca_cert_pem`."""
        given = self._args.tls_secret
        if given:
            self.ca_cert_pem = pulumi.Output.from_input(given.ca_cert_pem)
            return given.name, []
        n = self._args.name
        bundle = TlsBundle(
            f"{self._name}-tls", common_name=n, ip_addresses=["127.0.0.1"],
            dns_names=pulumi.Output.from_input(self._args.namespace).apply(self._dns_names),
            # The prod stack made this certificate before the component did: keep it, do not replace it.
            opts=pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)]))
        secret = k8s.core.v1.Secret(f"{self._name}-tls", metadata=self._meta(f"{n}-tls"), type="Opaque",
                                    string_data={"ca.pem": bundle.ca_pem, "tls.crt": bundle.cert_pem,
                                                 "tls.key": bundle.key_pem}, opts=self._child)
        self.ca_cert_pem = bundle.ca_pem
        return f"{n}-tls", [secret]

    def _dns_names(self, namespace: str) -> list[str]:
        """Every name a client or peer may dial: each Service and each pod, short and qualified."""
        services, pods = list(self._service_specs()), self._pods
        return ["localhost", *[f"{s}.{namespace}.svc" for s in services], *[f"{s}.{namespace}" for s in services],
                *services, *[f"{p}.{self._headless}" for p in pods],
                *[f"{p}.{self._headless}.{namespace}.svc" for p in pods]]

    def _server_config(self) -> k8s.core.v1.ConfigMap:
        args = self._args
        peers = [f"https://{p}.{self._headless}:{API_PORT}" for p in self._pods]
        config = RaftServerConfig(peers=peers, tls_dir=TLS_DIR, declare_audit=args.flavor == "openbao",
                                  kubernetes_service_registration=True,
                                  seal=args.seal)
        return k8s.core.v1.ConfigMap(f"{self._name}-config", metadata=self._meta(f"{args.name}-config"),
                                     data={"server.hcl": config.render()}, opts=self._child)

    def _seal_key(self) -> list[pulumi.Resource]:
        seal = self._args.seal
        if not (self._args.generate_static_key and isinstance(seal, StaticSealArgs)):
            return []
        key = StaticSealKey(f"{self._name}-seal", namespace=self._args.namespace, secret_name=seal.secret_name,
                            labels=self._labels, opts=self._child)
        return [key.secret]

    def _service_specs(self) -> dict[str, dict]:
        n, labels = self._args.name, self._labels
        return {
            n: {"selector": labels},
            f"{n}-active": {"selector": {**labels, self._active_label: "true"}},
            f"{n}-standby": {"selector": {**labels, self._active_label: "false"}},
            # Stable per-pod DNS for retry_join, including pods that are not ready (sealed, joining).
            self._headless: {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": labels},
        }

    def _services(self) -> None:
        port_specs = [{"name": "https", "port": API_PORT, "targetPort": API_PORT},
                      {"name": "https-internal", "port": CLUSTER_PORT, "targetPort": CLUSTER_PORT}]
        for svc_name, spec in self._service_specs().items():
            # Never awaited: their endpoints are Ready pods, and a pod is Ready once unsealed, which only
            # the bootstrap, after this component, does.
            k8s.core.v1.Service(f"{self._name}-svc-{svc_name}", metadata=self._meta(svc_name, skip_await=True),
                                spec={"ports": port_specs, **spec}, opts=self._child)

    def _disruption_budget_and_network_policy(self) -> None:
        n, labels = self._args.name, self._labels
        k8s.policy.v1.PodDisruptionBudget(f"{self._name}-pdb", metadata=self._meta(n), spec={
            "maxUnavailable": 1, "selector": {"matchLabels": labels}}, opts=self._child)
        api_from: list[dict] = [{"podSelector": {}}] + [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
            for ns in self._args.client_namespaces]
        if self._args.prometheus_namespace:
            api_from.append({"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": self._args.prometheus_namespace}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}})
        k8s.networking.v1.NetworkPolicy(f"{self._name}-netpol", metadata=self._meta(n), spec={
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": api_from, "ports": [{"protocol": "TCP", "port": API_PORT}]},
                {"from": [{"podSelector": {"matchLabels": labels}}],
                 "ports": [{"protocol": "TCP", "port": CLUSTER_PORT}]},
            ],
        }, opts=self._child)

    def _env(self) -> list[dict]:
        env = [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ]
        for prefix in ("BAO", "VAULT"):  # OpenBao reads BAO_*, HashiCorp Vault VAULT_*
            env += [
                {"name": f"{prefix}_API_ADDR", "value": f"https://$(POD_NAME).{self._headless}:{API_PORT}"},
                {"name": f"{prefix}_CLUSTER_ADDR", "value": f"https://$(POD_NAME).{self._headless}:{CLUSTER_PORT}"},
                {"name": f"{prefix}_RAFT_NODE_ID", "value": "$(POD_NAME)"},
                {"name": f"{prefix}_K8S_POD_NAME", "value": "$(POD_NAME)"},
                {"name": f"{prefix}_K8S_NAMESPACE", "value": "$(POD_NAMESPACE)"},
            ]
        return env + (self._args.seal.env() if self._args.seal else [])

    def _container(self) -> dict:
        args = self._args

        def health_probe(query: str, **timing) -> dict:
            return {"httpGet": {"path": f"/v1/sys/health?{query}", "port": API_PORT, "scheme": "HTTPS"}, **timing}

        return {
            "name": args.name,
            "image": args.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["bao" if args.flavor == "openbao" else "vault", "server", f"-config={SERVER_HCL}"],
            "env": self._env(),
            "ports": [{"name": "https", "containerPort": API_PORT},
                      {"name": "https-internal", "containerPort": CLUSTER_PORT}],
            # Ready = unsealed and serving (active, or standby that forwards): sealed answers 503.
            "readinessProbe": health_probe("standbyok=true&perfstandbyok=true",
                                           periodSeconds=5, failureThreshold=2, timeoutSeconds=3),
            # Alive = the process answers at all: never restart a sealed, uninitialised or standby pod.
            "livenessProbe": health_probe("standbyok=true&perfstandbyok=true&sealedcode=200&uninitcode=200",
                                          initialDelaySeconds=60, periodSeconds=10, failureThreshold=6,
                                          timeoutSeconds=5),
            # Let Services and clients move off the pod before it stops.
            "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 5"]}}},
            "resources": args.resources.spec(),
            "securityContext": {
                "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": GID,
                "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [
                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
                {"name": "data", "mountPath": DATA_DIR},
                {"name": "audit", "mountPath": LOGS_DIR},
                {"name": "tmp", "mountPath": "/tmp"},
                *(args.seal.mounts() if args.seal else []),
            ],
        }

    def _claim(self, claim_name: str, size: str) -> dict:
        return {
            "metadata": {"name": claim_name, "labels": self._labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                     **({"storageClassName": self._args.storage_class} if self._args.storage_class else {})},
        }

    def _statefulset(self, tls_secret: str, depends_on: list[pulumi.Resource]) -> k8s.apps.v1.StatefulSet:
        args, n, labels = self._args, self._args.name, self._labels
        # Never awaited, like the Services: its pods turn Ready once the bootstrap has unsealed them.
        return k8s.apps.v1.StatefulSet(f"{self._name}-sts", metadata=self._meta(n, skip_await=True), spec={
            "serviceName": self._headless,
            "replicas": args.replicas,
            "podManagementPolicy": "Parallel",  # Raft peers must start together to form a quorum
            "updateStrategy": {"type": "OnDelete"},  # upgrades go pod by pod, standbys first, by the operator
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {
                    "prometheus.io/scrape": "true", "prometheus.io/scheme": "https",
                    "prometheus.io/path": "/v1/sys/metrics", "prometheus.io/port": str(API_PORT),
                }},
                "spec": {
                    "serviceAccountName": n,
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": GID, "fsGroup": GID,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}]}},
                    "containers": [self._container()],
                    "volumes": [
                        {"name": "config", "configMap": {"name": f"{n}-config"}},
                        {"name": "tls", "secret": {"secretName": tls_secret, "defaultMode": 0o440}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                        *(args.seal.volumes() if args.seal else []),
                    ],
                },
            },
            "volumeClaimTemplates": [self._claim("data", args.data_storage), self._claim("audit", args.audit_storage)],
        }, opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on,
                                       # Its name is fixed, so a replacement must delete first (and
                                       # tools/ci_deploy.py refuses that unless told otherwise).
                                       delete_before_replace=True))
