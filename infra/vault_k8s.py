"""Vault/OpenBao as an HA Raft cluster on Kubernetes, with the defaults an operator expects in production.

StatefulSet (3 by default) with integrated Raft and `retry_join`; TLS on the API and cluster ports from a
Secret; required pod anti-affinity; a PodDisruptionBudget; readiness = unsealed and serving, liveness
that never kills a sealed or standby pod; OnDelete updates; a pre-stop delay; non-root, read-only
containers; headless, active and standby Services; a ServiceAccount with the RBAC that service
registration needs; a NetworkPolicy; requests and limits; Prometheus telemetry; audit volumes;
optional transit auto-unseal (Shamir otherwise).
"""
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from infra.server_config import RaftServerConfig

API_PORT, CLUSTER_PORT = 8200, 8201
UID, GID = 100, 1000


@dataclass
class TransitSealArgs:
    address: str
    key_name: str
    token_secret_name: str  # a Secret in the namespace with key `token`
    mount_path: str = "transit/"


@dataclass
class VaultKubernetesArgs:
    namespace: pulumi.Input[str]
    image: str
    # The TLS material for a Secret the component makes, or `tls_secret_name`: an existing Secret with
    # the keys ca.pem, tls.crt and tls.key.
    tls_ca_pem: pulumi.Input[str] = ""
    tls_cert_pem: pulumi.Input[str] = ""
    tls_key_pem: pulumi.Input[str] = ""
    tls_secret_name: Optional[str] = None
    replicas: int = 3
    flavor: str = "openbao"
    name: str = "vault"
    data_storage: str = "10Gi"
    audit_storage: str = "10Gi"
    storage_class: Optional[str] = None
    resources: dict = field(default_factory=lambda: {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    })
    transit_seal: Optional[TransitSealArgs] = None
    # Namespaces whose pods may call the API (8200); the cluster port only ever talks to peers.
    client_namespaces: list[str] = field(default_factory=list)
    # Test API servers run no controllers: skip pulumi-kubernetes' readiness waits there.
    skip_await: bool = False


class VaultKubernetes(pulumi.ComponentResource):
    """Outputs: `internal_address` (the active Service, for clients in the cluster), `headless_service`,
    `node_addresses` (each pod's stable DNS name), `statefulset_name`."""

    internal_address: pulumi.Output[str]
    node_addresses: pulumi.Output[list]
    statefulset_name: pulumi.Output[str]

    def __init__(self, name: str, args: VaultKubernetesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:VaultKubernetes", name, None, opts)
        if args.replicas < 3 or args.replicas % 2 == 0:
            raise ValueError(f"a Raft cluster needs an odd number of replicas, at least 3 (got {args.replicas})")
        n = args.name
        labels = {"app.kubernetes.io/name": n, "app.kubernetes.io/instance": n,
                  "app.kubernetes.io/part-of": "vault-envvars"}
        annotations = {"pulumi.com/skipAwait": "true"} if args.skip_await else {}

        def meta(obj_name: str, **extra) -> dict:
            return {"name": obj_name, "namespace": args.namespace, "labels": labels,
                    "annotations": annotations, **extra}

        child = pulumi.ResourceOptions(parent=self)
        headless = f"{n}-internal"
        pods = [f"{n}-{i}" for i in range(args.replicas)]
        peers = [f"https://{p}.{headless}:{API_PORT}" for p in pods]

        sa = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=meta(n), automount_service_account_token=True,
                                        opts=child)
        # Service registration labels its own pod (vault-active, vault-sealed...): get and patch pods only.
        role = k8s.rbac.v1.Role(f"{name}-discovery", metadata=meta(f"{n}-discovery"), rules=[
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "update", "patch"]}], opts=child)
        k8s.rbac.v1.RoleBinding(f"{name}-discovery", metadata=meta(f"{n}-discovery"),
                                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{n}-discovery"},
                                subjects=[{"kind": "ServiceAccount", "name": n, "namespace": args.namespace}],
                                opts=pulumi.ResourceOptions(parent=self, depends_on=[role, sa]))

        tls_secret = args.tls_secret_name or f"{n}-tls"
        depends = [sa]
        if not args.tls_secret_name:
            depends.append(k8s.core.v1.Secret(f"{name}-tls", metadata=meta(tls_secret), type="Opaque",
                                              string_data={"ca.pem": args.tls_ca_pem, "tls.crt": args.tls_cert_pem,
                                                           "tls.key": args.tls_key_pem}, opts=child))
        seal = None
        if args.transit_seal:
            seal = {"address": args.transit_seal.address, "key_name": args.transit_seal.key_name,
                    "mount_path": args.transit_seal.mount_path}
        config = RaftServerConfig(peers=peers, tls_dir="/bao/tls", declare_audit=args.flavor == "openbao",
                                  kubernetes_service_registration=True, transit_seal=seal).render()
        cm = k8s.core.v1.ConfigMap(f"{name}-config", metadata=meta(f"{n}-config"), data={"server.hcl": config},
                                   opts=child)

        port_specs = [{"name": "https", "port": API_PORT, "targetPort": API_PORT},
                      {"name": "https-internal", "port": CLUSTER_PORT, "targetPort": CLUSTER_PORT}]
        services = {
            # Stable per-pod DNS for retry_join, including pods that are not ready (sealed, joining).
            headless: {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": labels},
            n: {"selector": labels},
            f"{n}-active": {"selector": {**labels, "vault-active": "true"}},
            f"{n}-standby": {"selector": {**labels, "vault-active": "false"}},
        }
        for svc_name, spec in services.items():
            k8s.core.v1.Service(f"{name}-svc-{svc_name}", metadata=meta(svc_name),
                                spec={"ports": port_specs, **spec}, opts=child)

        k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=meta(n), spec={
            "maxUnavailable": 1, "selector": {"matchLabels": labels}}, opts=child)

        api_from = [{"podSelector": {}}] + [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}} for ns in args.client_namespaces]
        k8s.networking.v1.NetworkPolicy(f"{name}-netpol", metadata=meta(n), spec={
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": api_from, "ports": [{"protocol": "TCP", "port": API_PORT}]},
                {"from": [{"podSelector": {"matchLabels": labels}}],
                 "ports": [{"protocol": "TCP", "port": CLUSTER_PORT}]},
            ],
        }, opts=child)

        binary = "bao" if args.flavor == "openbao" else "vault"
        env = [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ]
        for prefix in ("BAO", "VAULT"):  # OpenBao reads BAO_*, HashiCorp Vault VAULT_*
            env += [
                {"name": f"{prefix}_API_ADDR", "value": f"https://$(POD_NAME).{headless}:{API_PORT}"},
                {"name": f"{prefix}_CLUSTER_ADDR", "value": f"https://$(POD_NAME).{headless}:{CLUSTER_PORT}"},
                {"name": f"{prefix}_RAFT_NODE_ID", "value": "$(POD_NAME)"},
                {"name": f"{prefix}_K8S_POD_NAME", "value": "$(POD_NAME)"},
                {"name": f"{prefix}_K8S_NAMESPACE", "value": "$(POD_NAMESPACE)"},
            ]
            if args.transit_seal:
                env.append({"name": f"{prefix}_TOKEN", "valueFrom": {"secretKeyRef": {
                    "name": args.transit_seal.token_secret_name, "key": "token"}}})

        def health_probe(query: str, **timing) -> dict:
            return {"httpGet": {"path": f"/v1/sys/health?{query}", "port": API_PORT, "scheme": "HTTPS"}, **timing}

        container = {
            "name": n,
            "image": args.image,
            "imagePullPolicy": "IfNotPresent",
            "command": [binary, "server", "-config=/bao/config/server.hcl"],
            "env": env,
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
            "resources": args.resources,
            "securityContext": {
                "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": GID,
                "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [
                {"name": "config", "mountPath": "/bao/config", "readOnly": True},
                {"name": "tls", "mountPath": "/bao/tls", "readOnly": True},
                {"name": "data", "mountPath": "/bao/data"},
                {"name": "audit", "mountPath": "/bao/logs"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }
        pvc = lambda pvc_name, size: {  # noqa: E731
            "metadata": {"name": pvc_name, "labels": labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                     **({"storageClassName": args.storage_class} if args.storage_class else {})},
        }
        self.statefulset = k8s.apps.v1.StatefulSet(f"{name}-sts", metadata=meta(n), spec={
            "serviceName": headless,
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
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": f"{n}-config"}},
                        {"name": "tls", "secret": {"secretName": tls_secret, "defaultMode": 0o440}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    ],
                },
            },
            "volumeClaimTemplates": [pvc("data", args.data_storage), pvc("audit", args.audit_storage)],
        }, opts=pulumi.ResourceOptions(parent=self, depends_on=[cm, *depends],
                                       # Its name is fixed, so a replacement must delete first (and
                                       # tools/ci_deploy.py refuses that unless told otherwise).
                                       delete_before_replace=True))

        self.internal_address = pulumi.Output.from_input(args.namespace).apply(
            lambda ns: f"https://{n}-active.{ns}.svc:{API_PORT}")
        self.node_addresses = pulumi.Output.from_input(peers)
        self.statefulset_name = self.statefulset.metadata["name"]
        self.register_outputs({"internal_address": self.internal_address, "node_addresses": self.node_addresses,
                               "statefulset_name": self.statefulset_name})
