"""The service's Kubernetes deployment by a real `pulumi up` on the real kube-apiserver, read back:
replicas, probes, PDB, non-root read-only pods, Service, Ingress, and credentials only in a Secret."""
import base64
import json
import secrets

import pytest
from kubernetes import client as kclient
from kubernetes import config as kconfig
from pulumi import automation as auto

from devkit.stacks import ThrowawayStack
from service.executor.base import JobSpec
from service.executor.kubernetes_backend import KubernetesBackend

pytestmark = pytest.mark.e2e
NS = "envvars-e2e"


def test_service_on_kubernetes(pulumi_backend, kube_apiserver):
    secret_id = f"sid-{secrets.token_hex(8)}"
    db_url = f"postgresql+psycopg://envvars:{secrets.token_hex(8)}@db.example/envvars"
    s = ThrowawayStack("e2e/programs/service_k8s", dict(pulumi_backend))
    s.stack.set_all_config({"target:kubeconfig": auto.ConfigValue(kube_apiserver.kubeconfig),
                            "target:secretId": auto.ConfigValue(secret_id, secret=True),
                            "target:databaseUrl": auto.ConfigValue(db_url, secret=True)})
    try:
        s.up()
        api = kconfig.new_client_from_config(config_file=kube_apiserver.kubeconfig)
        dep = kclient.AppsV1Api(api).read_namespaced_deployment("envvars", NS)
        assert dep.spec.replicas == 2 and dep.spec.strategy.rolling_update.max_unavailable == 0
        pod = dep.spec.template.spec
        assert pod.service_account_name == "envvars" and pod.security_context.run_as_non_root is True
        (c,) = pod.containers
        env = {e.name: e.value for e in c.env}
        assert env["ENVVARS_EXECUTOR_BACKEND"] == "kubernetes" and env["ENVVARS_KUBERNETES_NAMESPACE"] == "env-vars-jobs"
        # The service's token may run jobs in their own namespace, and do nothing else: never read a Secret.
        rbac = kclient.RbacAuthorizationV1Api(api)
        rules = {(r.resources[0], tuple(r.verbs)) for r in
                 rbac.read_namespaced_role("envvars-job-runner", "env-vars-jobs").rules}
        assert ("secrets", ("create", "delete")) in rules and not any(
            res == "secrets" and ({"get", "list", "watch"} & set(verbs)) for res, verbs in rules)
        (subject,) = rbac.read_namespaced_role_binding("envvars-job-runner", "env-vars-jobs").subjects
        assert (subject.name, subject.namespace) == ("envvars", NS)
        assert kclient.RbacAuthorizationV1Api(api).list_namespaced_role(NS).items == []
        isolation = kclient.NetworkingV1Api(api).read_namespaced_network_policy("job-isolation", "env-vars-jobs").spec
        assert isolation.pod_selector.match_labels is None and not isolation.ingress
        # Default-deny egress: the program lists one CIDR, which never covers the metadata address.
        assert isolation.policy_types == ["Ingress", "Egress"]
        (rule,) = isolation.egress
        assert rule.to[0].ip_block.cidr == "0.0.0.0/0" and rule.to[0].ip_block._except == ["169.254.169.254/32"]
        assert {(p.protocol, p.port) for p in rule.ports} == {("TCP", 443), ("UDP", 443)}
        _pod_security_is_enforced(api, pod)
        assert c.readiness_probe.http_get.path == "/readyz" and c.liveness_probe.http_get.path == "/healthz"
        assert c.security_context.read_only_root_filesystem is True and c.security_context.capabilities.drop == ["ALL"]
        assert c.resources.limits == {"cpu": "1", "memory": "512Mi", "ephemeral-storage": "512Mi"}
        creds = next(v for v in pod.volumes if v.name == "credentials").secret
        assert creds.secret_name == "envvars-credentials" and creds.default_mode == 0o400
        spec_text = json.dumps(api.sanitize_for_serialization(dep))
        assert secret_id not in spec_text and db_url not in spec_text
        secret = kclient.CoreV1Api(api).read_namespaced_secret("envvars-credentials", NS)
        assert base64.b64decode(secret.data["approle-secret-id"]).decode() == secret_id
        assert kclient.PolicyV1Api(api).read_namespaced_pod_disruption_budget("envvars", NS).spec.min_available == 1
        svc = kclient.CoreV1Api(api).read_namespaced_service("envvars", NS).spec
        assert [(p.port, p.target_port) for p in svc.ports] == [(80, 8080)]
        ing = kclient.NetworkingV1Api(api).read_namespaced_ingress("envvars", NS).spec
        assert ing.rules[0].host == "envvars.example" and ing.tls[0].secret_name == "envvars-tls"
        assert not s.stored_text_contains(secret_id) and not s.stored_text_contains(db_url)
        assert s.changes_of_second_up() == {}
    finally:
        s.destroy()


def _pod_security_is_enforced(api, service_pod: kclient.V1PodSpec) -> None:
    """The jobs' namespace is labelled `restricted` and the API server enforces it: a job pod as the
    service makes it, and the service's own pod, are admitted (a server-side dry run: nothing is stored);
    a pod that asks for privileges is refused."""
    labels = kclient.CoreV1Api(api).read_namespace("env-vars-jobs").metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    core = kclient.CoreV1Api(api)
    backend = KubernetesBackend("env-vars-jobs", "localhost/job:1", api_client=api)
    job_pod = backend.manifest(JobSpec("psa-probe", ["true"], {}, 60)).spec.template.spec
    for name, spec in (("job", job_pod), ("service", service_pod)):
        core.create_namespaced_pod("env-vars-jobs", {"metadata": {"name": f"psa-{name}"}, "spec": spec}, dry_run="All")
    privileged = {"metadata": {"name": "psa-privileged"}, "spec": {"containers": [{
        "name": "c", "image": "localhost/job:1", "securityContext": {"privileged": True}}]}}
    with pytest.raises(kclient.ApiException) as refused:
        core.create_namespaced_pod("env-vars-jobs", privileged, dry_run="All")
    assert refused.value.status == 403 and "violates PodSecurity" in refused.value.body
