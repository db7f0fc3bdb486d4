"""The env-vars service on Kubernetes: a Deployment of 2+ replicas with probes on /healthz and /readyz,
a PodDisruptionBudget, non-root read-only containers, a Service and an optional Ingress. The AppRole
secret id and the database URL reach the pods as 0400 files from a Secret, never in the pod spec.

Jobs run as Kubernetes Jobs in a namespace of their own (the kubernetes executor backend): the service's
ServiceAccount may only create, follow and delete Jobs, their Secrets and their pods' logs there (it
cannot read a Secret back); job pods get no token and accept no connection (a NetworkPolicy), and with
`job_network="none"` make none either."""
import hashlib
import json
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from infra.job_egress import JobEgressRule, egress_rules
from infra.kube_meta import POD_SECURITY_RESTRICTED, annotated
from infra.providers.random import RandomSecret
from infra.service_connection import SECRETS_DIR, ServiceConnection, secret_files, service_env

# How long a stopping replica lets running jobs end (the service's ENVVARS_SHUTDOWN_GRACE_SECONDS); the
# pod's termination grace is longer, so Kubernetes' SIGKILL never cuts that short.
SHUTDOWN_GRACE_SECONDS = 20


@dataclass
class ServiceKubernetesArgs:
    namespace: pulumi.Input[str]
    image: str
    connection: ServiceConnection
    database_url: pulumi.Input[str]  # PostgreSQL; a secret
    replicas: int = 2
    resources: dict = field(default_factory=lambda: {
        "requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
        "limits": {"cpu": "1", "memory": "512Mi", "ephemeral-storage": "512Mi"}})
    ingress_host: str = ""
    ingress_tls_secret: str = ""
    jobs_namespace: str = "env-vars-jobs"
    job_image: str = "python:3.12-slim"
    job_network: str = "on"  # "none": job pods may not open any connection
    # With "on": where job pods may connect (nowhere by default), and the API server's addresses, which
    # no CIDR of the allowlist covers unless it names them (infra/job_egress.py).
    job_egress: list[JobEgressRule] = field(default_factory=list)
    api_server_cidrs: list[str] = field(default_factory=list)
    skip_await: bool = False
    # A fixed NodePort for the Service (0: ClusterIP only). For a cluster without an ingress controller,
    # such as the local one, where NodePorts answer on the pod bridge's address only.
    node_port: int = 0
    # Session cookies Secure whatever the URL; off only for a local stand-in served over plain http.
    secure_cookies: bool = True


def checksum(*values: pulumi.Input) -> pulumi.Output[str]:
    """A SHA-256 over values (dicts of strings), as a pod annotation: a new one rolls the Deployment. It
    tells nothing of a secret value (a digest of high-entropy keys among them), and stays a Pulumi secret."""
    def digest(resolved: list) -> str:
        return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()
    return pulumi.Output.all(*values).apply(digest)


class ServiceKubernetes(pulumi.ComponentResource):
    """Outputs: `internal_url` (the Service) and `url` (the Ingress, when one is made)."""

    internal_url: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(self, name: str, args: ServiceKubernetesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:ServiceKubernetes", name, None, opts)
        if args.replicas < 2:
            raise ValueError("the service runs at least 2 replicas")
        labels = {"app.kubernetes.io/name": "envvars", "app.kubernetes.io/part-of": "vault-envvars"}
        annotations = {"pulumi.com/skipAwait": "true"} if args.skip_await else {}

        def meta(obj_name: str) -> dict:
            return {"name": obj_name, "namespace": args.namespace, "labels": labels, **annotated(annotations)}

        child = pulumi.ResourceOptions(parent=self)
        # One session key for every replica: a dashboard session works whichever pod answers.
        session_key = RandomSecret(f"{name}-session-key", length=32, opts=child)
        files = secret_files(args.connection, session_key.result, {"database-url": args.database_url})
        secret = k8s.core.v1.Secret(f"{name}-credentials", metadata=meta("envvars-credentials"), type="Opaque",
                                    string_data=files, opts=child)
        runner = self._job_runner(name, args, labels, annotations, child)
        env = service_env(args.connection, {
            "ENVVARS_DATABASE_URL_FILE": f"{SECRETS_DIR}/database-url", "ENVVARS_EXECUTOR_BACKEND": "kubernetes",
            "ENVVARS_KUBERNETES_NAMESPACE": args.jobs_namespace, "ENVVARS_KUBERNETES_IMAGE": args.job_image,
            "ENVVARS_JOB_NETWORK": args.job_network, "ENVVARS_SHUTDOWN_GRACE_SECONDS": str(SHUTDOWN_GRACE_SECONDS),
            "ENVVARS_SECURE_COOKIES": "true" if args.secure_cookies else "false"})
        probe = lambda path, **t: {"httpGet": {"path": path, "port": 8080}, **t}  # noqa: E731
        self.deployment = k8s.apps.v1.Deployment(f"{name}-deployment", metadata=meta("envvars"), spec={
            "replicas": args.replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": {"prometheus.io/scrape": "true",
                                                               "prometheus.io/port": "8080",
                                                               "prometheus.io/path": "/metrics",
                                                               # The pods read the Secret and settings at
                                                               # start: a change to either rolls them.
                                                               "checksum/config": checksum(files, env)}},
                "spec": {
                    # Its token reaches only what the job runner's Role allows, in the jobs' namespace.
                    "serviceAccountName": "envvars", "automountServiceAccountToken": True,
                    # No ENVVARS_PORT=tcp://... from the `envvars` Service: it is the service's own setting.
                    "enableServiceLinks": False,
                    # SIGTERM, then the service's grace for running jobs, then its own shutdown, before SIGKILL.
                    "terminationGracePeriodSeconds": SHUTDOWN_GRACE_SECONDS + 10,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                                        "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": labels},
                                                           "topologyKey": "kubernetes.io/hostname"}}]}},
                    "containers": [{
                        "name": "envvars", "image": args.image, "imagePullPolicy": "IfNotPresent",
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "env": env.apply(lambda e: [{"name": k, "value": v} for k, v in e.items()]),
                        "readinessProbe": probe("/readyz", periodSeconds=5, failureThreshold=2),
                        "livenessProbe": probe("/healthz", initialDelaySeconds=10, periodSeconds=10),
                        "resources": args.resources,
                        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "credentials", "mountPath": SECRETS_DIR, "readOnly": True},
                                         {"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [
                        {"name": "credentials", "secret": {"secretName": "envvars-credentials", "defaultMode": 0o400}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
        }, opts=pulumi.ResourceOptions(parent=self, depends_on=[secret, *runner]))
        # Its port, from anywhere (browsers arrive through the NodePort or the ingress controller, whose
        # addresses the stack does not know; Prometheus from its namespace); nothing else reaches the pods.
        k8s.networking.v1.NetworkPolicy(f"{name}-netpol", metadata=meta("envvars"), spec={
            "podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": 8080}]}]}, opts=child)
        k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=meta("envvars"), spec={
            "minAvailable": 1, "selector": {"matchLabels": labels}}, opts=child)
        port = {"name": "http", "port": 80, "targetPort": 8080, **({"nodePort": args.node_port} if args.node_port else {})}
        svc = k8s.core.v1.Service(f"{name}-svc", metadata=meta("envvars"), spec={
            "selector": labels, "type": "NodePort" if args.node_port else "ClusterIP", "ports": [port]}, opts=child)
        self.internal_url = pulumi.Output.from_input(args.namespace).apply(lambda ns: f"http://envvars.{ns}.svc")
        self.url = pulumi.Output.from_input("")
        if args.ingress_host:
            k8s.networking.v1.Ingress(f"{name}-ingress", metadata=meta("envvars"), spec={
                "rules": [{"host": args.ingress_host, "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "envvars", "port": {"number": 80}}}}]}}],
                **({"tls": [{"hosts": [args.ingress_host], "secretName": args.ingress_tls_secret}]}
                   if args.ingress_tls_secret else {}),
            }, opts=pulumi.ResourceOptions(parent=self, depends_on=[svc]))
            self.url = pulumi.Output.from_input(
                f"{'https' if args.ingress_tls_secret else 'http'}://{args.ingress_host}")
        self.register_outputs({"internal_url": self.internal_url, "url": self.url})

    @staticmethod
    def _job_runner(name: str, args: ServiceKubernetesArgs, labels: dict, annotations: dict,
                    child: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """The jobs' namespace, the service's ServiceAccount and the Role it holds there, and the job pods'
        NetworkPolicy."""
        jobs = {"name": args.jobs_namespace, "labels": labels, **annotated(annotations)}
        ns = k8s.core.v1.Namespace(f"{name}-jobs-namespace", metadata={
            **jobs, "labels": {**labels, **POD_SECURITY_RESTRICTED}}, opts=child)
        in_jobs = pulumi.ResourceOptions(parent=child.parent, depends_on=[ns])
        account = k8s.core.v1.ServiceAccount(f"{name}-account", metadata={
            "name": "envvars", "namespace": args.namespace, "labels": labels, **annotated(annotations)},
            opts=child)
        role = k8s.rbac.v1.Role(f"{name}-job-runner", metadata={**jobs, "name": "envvars-job-runner",
                                                               "namespace": args.jobs_namespace}, rules=[
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "delete"]},
            {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        ], opts=in_jobs)
        binding = k8s.rbac.v1.RoleBinding(f"{name}-job-runner", metadata={
            **jobs, "name": "envvars-job-runner", "namespace": args.jobs_namespace},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "envvars-job-runner"},
            subjects=[{"kind": "ServiceAccount", "name": "envvars", "namespace": args.namespace}], opts=in_jobs)
        isolation = k8s.networking.v1.NetworkPolicy(f"{name}-job-isolation", metadata={
            **jobs, "name": "job-isolation", "namespace": args.jobs_namespace}, spec={
            "podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [],
            "egress": [] if args.job_network == "none" else egress_rules(args.job_egress, args.api_server_cidrs)},
            opts=in_jobs)
        return [account, role, binding, isolation]
