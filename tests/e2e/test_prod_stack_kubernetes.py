"""The prod stack's Vault part applied by a real `pulumi up` to a real kube-apiserver (built from Go
modules, on loopback), then every production default read back with the Kubernetes client."""
import os
import subprocess
import sys

import pytest
from kubernetes import client as kclient
from kubernetes import config as kconfig
from pulumi import automation as auto

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.e2e
PROGRAM = "e2e/programs/prod_stack"
NS = "vault-e2e"


@pytest.fixture(scope="module")
def prod_up(pulumi_backend, kube_apiserver):
    from devkit.stacks import ThrowawayStack

    s = ThrowawayStack(PROGRAM, dict(pulumi_backend))
    s.stack.set_all_config({
        "vault-envvars:kubeconfig": auto.ConfigValue(kube_apiserver.kubeconfig),
        "vault-envvars:namespace": auto.ConfigValue(NS),
        "vault-envvars:skipAwait": auto.ConfigValue("true"),
        "vault-envvars:bootstrap": auto.ConfigValue("false"),  # no kubelet: no pod ever runs to bootstrap
        "vault-envvars:clientNamespaces": auto.ConfigValue("env-vars"),
    })
    try:
        s.up()
        api = kconfig.new_client_from_config(config_file=kube_apiserver.kubeconfig)
        yield s, api
    finally:
        s.destroy()


def test_second_up_changes_nothing(prod_up):
    s, _ = prod_up
    assert s.changes_of_second_up() == {}


def test_statefulset_defaults(prod_up):
    _, api = prod_up
    sts = kclient.AppsV1Api(api).read_namespaced_stateful_set("vault", NS)
    spec = sts.spec
    assert spec.replicas == 3
    assert spec.service_name == "vault-internal"
    assert spec.pod_management_policy == "Parallel"
    assert spec.update_strategy.type == "OnDelete"
    assert sorted(t.metadata.name for t in spec.volume_claim_templates) == ["audit", "data"]
    pod = spec.template.spec
    assert pod.service_account_name == "vault"
    assert pod.termination_grace_period_seconds == 10
    assert pod.security_context.run_as_non_root is True and pod.security_context.run_as_user == 100
    assert pod.security_context.fs_group == 1000
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    anti = pod.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution
    assert len(anti) == 1 and anti[0].topology_key == "kubernetes.io/hostname"
    assert anti[0].label_selector.match_labels == spec.selector.match_labels

    (c,) = pod.containers
    assert c.command == ["bao", "server", "-config=/bao/config/server.hcl"]
    sc = c.security_context
    assert sc.read_only_root_filesystem is True and sc.allow_privilege_escalation is False
    assert sc.capabilities.drop == ["ALL"]
    assert c.resources.requests == {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "64Mi"}
    assert c.resources.limits == {"cpu": "1", "memory": "512Mi", "ephemeral-storage": "1Gi"}
    assert c.readiness_probe.http_get.path == "/v1/sys/health?standbyok=true&perfstandbyok=true"
    assert c.readiness_probe.http_get.scheme == "HTTPS"
    live = c.liveness_probe.http_get.path
    assert "standbyok=true" in live and "sealedcode=200" in live and "uninitcode=200" in live
    assert c.lifecycle.pre_stop._exec.command == ["/bin/sh", "-c", "sleep 5"]
    assert {p.container_port for p in c.ports} == {8200, 8201}
    env = {e.name: e.value for e in c.env}
    assert env["BAO_API_ADDR"] == "https://$(POD_NAME).vault-internal:8200"
    assert env["BAO_RAFT_NODE_ID"] == "$(POD_NAME)"
    tls = next(v for v in pod.volumes if v.name == "tls")
    assert tls.secret.secret_name == "vault-tls" and tls.secret.default_mode == 0o440
    annotations = spec.template.metadata.annotations
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/v1/sys/metrics"


def test_server_config_is_raft_with_tls_and_audit(prod_up):
    _, api = prod_up
    hcl = kclient.CoreV1Api(api).read_namespaced_config_map("vault-config", NS).data["server.hcl"]
    for expected in ('storage "raft"', 'leader_api_addr = "https://vault-2.vault-internal:8200"',
                     'tls_cert_file = "/bao/tls/tls.crt"', "disable_standby_reads = true",
                     "performance_multiplier = 1", 'service_registration "kubernetes"',
                     'audit "file" "file"', 'audit "file" "stdout"', "prometheus_retention_time"):
        assert expected in hcl, expected
    assert "tls_disable" not in hcl and 'seal "transit"' not in hcl  # Shamir by default


def test_tls_secret_holds_the_key_and_state_does_not_show_it(prod_up):
    s, api = prod_up
    secret = kclient.CoreV1Api(api).read_namespaced_secret("vault-tls", NS)
    assert sorted(secret.data) == ["ca.pem", "tls.crt", "tls.key"]
    import base64

    key = base64.b64decode(secret.data["tls.key"]).decode()
    assert "PRIVATE KEY" in key
    assert s.stored_text_contains(key.splitlines()[1]) is False


def test_services(prod_up):
    _, api = prod_up
    core = kclient.CoreV1Api(api)
    headless = core.read_namespaced_service("vault-internal", NS).spec
    assert headless.cluster_ip == "None" and headless.publish_not_ready_addresses is True
    # OpenBao's service registration labels its pods openbao-active (HashiCorp Vault's: vault-active).
    assert core.read_namespaced_service("vault-active", NS).spec.selector["openbao-active"] == "true"
    assert core.read_namespaced_service("vault-standby", NS).spec.selector["openbao-active"] == "false"
    for name in ("vault", "vault-active", "vault-standby", "vault-internal"):
        assert {p.port for p in core.read_namespaced_service(name, NS).spec.ports} == {8200, 8201}


def test_pdb_rbac_and_network_policy(prod_up):
    _, api = prod_up
    pdb = kclient.PolicyV1Api(api).read_namespaced_pod_disruption_budget("vault", NS)
    assert pdb.spec.max_unavailable == 1
    role = kclient.RbacAuthorizationV1Api(api).read_namespaced_role("vault-discovery", NS)
    assert [(r.resources, sorted(r.verbs)) for r in role.rules] == [(["pods"], ["get", "patch", "update"])]
    binding = kclient.RbacAuthorizationV1Api(api).read_namespaced_role_binding("vault-discovery", NS)
    assert binding.subjects[0].name == "vault" and binding.role_ref.name == "vault-discovery"
    np = kclient.NetworkingV1Api(api).read_namespaced_network_policy("vault", NS).spec
    assert np.policy_types == ["Ingress"]
    api_rule, cluster_rule = np.ingress
    assert [p.port for p in api_rule.ports] == [8200]
    assert any(f.namespace_selector and f.namespace_selector.match_labels == {"kubernetes.io/metadata.name": "env-vars"}
               for f in api_rule._from)
    assert [p.port for p in cluster_rule.ports] == [8201]
    assert cluster_rule._from[0].pod_selector.match_labels["app.kubernetes.io/name"] == "vault"


def test_snapshot_cronjob(prod_up):
    _, api = prod_up
    cron = kclient.BatchV1Api(api).read_namespaced_cron_job("vault-snapshots", NS).spec
    assert cron.schedule == "0 * * * *" and cron.concurrency_policy == "Forbid"
    job = cron.job_template.spec.template.spec
    (c,) = job.containers
    assert c.command[:2] == ["python3", "/agent/snapshot_agent.py"]
    assert "--interval" in c.command and c.command[c.command.index("--interval") + 1] == "0"
    assert c.security_context.read_only_root_filesystem is True
    assert job.security_context.run_as_non_root is True and job.automount_service_account_token is False
    assert next(v for v in job.volumes if v.name == "credential").secret.secret_name == "vault-snapshot-approle"
    agent = kclient.CoreV1Api(api).read_namespaced_config_map("vault-snapshot-agent", NS).data
    assert "def verify_snapshot" in agent["snapshot_agent.py"] and "BEGIN CERTIFICATE" in agent["ca.pem"]


def _ci_deploy(s, pulumi_backend, action: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "tools", "ci_deploy.py"), action, s.name],
                          cwd=s.work_dir, env={**os.environ, **pulumi_backend, **env}, capture_output=True,
                          text=True, timeout=300)


def test_ci_preview_refuses_to_replace_the_statefulset(prod_up, pulumi_backend):
    s, _ = prod_up
    assert _ci_deploy(s, pulumi_backend, "preview").returncode == 0  # nothing to do
    s.stack.set_config("vault-envvars:vaultCpuLimit", auto.ConfigValue("2"))  # an in-place update: allowed
    try:
        assert _ci_deploy(s, pulumi_backend, "preview").returncode == 0
        s.stack.set_config("vault-envvars:dataStorage", auto.ConfigValue("20Gi"))  # new claim templates: replace
        refused = _ci_deploy(s, pulumi_backend, "preview")
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert "kubernetes:apps/v1:StatefulSet vault-sts" in refused.stderr
        # Allowed, the preview still fails: the API server refuses to change a StatefulSet's claims in place.
        allowed = _ci_deploy(s, pulumi_backend, "preview", ALLOW_DESTRUCTIVE="1")
        assert allowed.returncode not in (0, 3) and "refusing" not in allowed.stderr
    finally:
        s.stack.remove_config("vault-envvars:vaultCpuLimit")
        s.stack.remove_config("vault-envvars:dataStorage")


def test_monitoring_objects(prod_up):
    """Prometheus, Alertmanager and the Pushgateway as the API server kept them: non-root, read-only, no
    token; Prometheus' configuration scraping every Vault pod with the stack's CA, and the repository's rules."""
    import yaml

    _, api = prod_up
    apps, core = kclient.AppsV1Api(api), kclient.CoreV1Api(api)
    for name, port in (("prometheus", 9090), ("alertmanager", 9093), ("pushgateway", 9091)):
        pod = apps.read_namespaced_deployment(name, NS).spec.template.spec
        assert pod.security_context.run_as_non_root is True and pod.security_context.run_as_user == 990
        assert pod.automount_service_account_token is False and pod.service_account_name == "monitoring"
        (c,) = pod.containers
        assert c.security_context.read_only_root_filesystem is True and c.security_context.capabilities.drop == ["ALL"]
        assert c.ports[0].container_port == port
        assert core.read_namespaced_service(name, NS).spec.ports[0].port == port
    config = core.read_namespaced_config_map("prometheus-config", NS).data
    jobs = {j["job_name"]: j for j in yaml.safe_load(config["prometheus.yml"])["scrape_configs"]}
    assert sorted(jobs) == ["alertmanager", "envvars-service", "prometheus", "vault", "vault-snapshots"]
    assert jobs["vault"]["static_configs"][0]["targets"] == [f"vault-{i}.vault-internal.{NS}.svc:8200" for i in range(3)]
    assert "BEGIN CERTIFICATE" in config["vault-ca.pem"]
    assert "VaultNodeDown" in core.read_namespaced_config_map("prometheus-rules", NS).data["vault.yml"]
    cron = kclient.BatchV1Api(api).read_namespaced_cron_job("vault-snapshots", NS)
    cmd = cron.spec.job_template.spec.template.spec.containers[0].command
    assert cmd[cmd.index("--pushgateway") + 1] == f"http://pushgateway.{NS}.svc:9091"


def test_the_namespace_enforces_restricted_pod_security_and_every_pod_passes(prod_up):
    """The API server admits the pods of Vault's StatefulSet, the snapshot CronJob and the monitoring in
    the `restricted` namespace (a server-side dry run of each template as a pod: nothing runs here) and
    refuses a pod that asks for the host's network."""
    _, api = prod_up
    core, apps = kclient.CoreV1Api(api), kclient.AppsV1Api(api)
    assert core.read_namespace(NS).metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    sts = apps.read_namespaced_stateful_set("vault", NS).spec
    # The StatefulSet controller adds a volume per claim template: so does the dry run.
    sts.template.spec.volumes += [kclient.V1Volume(name=t.metadata.name, persistent_volume_claim=(
        kclient.V1PersistentVolumeClaimVolumeSource(claim_name=f"{t.metadata.name}-vault-0")))
        for t in sts.volume_claim_templates]
    templates = {"vault": sts.template.spec,
                 "snapshots": kclient.BatchV1Api(api).read_namespaced_cron_job(
                     "vault-snapshots", NS).spec.job_template.spec.template.spec}
    templates.update({d.metadata.name: d.spec.template.spec for d in apps.list_namespaced_deployment(NS).items})
    assert {"vault", "snapshots", "prometheus", "alertmanager", "pushgateway"} <= set(templates)
    for name, spec in templates.items():
        core.create_namespaced_pod(NS, {"metadata": {"name": f"psa-{name}"}, "spec": spec}, dry_run="All")
    host = {"metadata": {"name": "psa-host"}, "spec": {"hostNetwork": True, "containers": [{
        "name": "c", "image": "localhost/vault-envvars/openbao:2.7.2"}]}}
    with pytest.raises(kclient.ApiException) as refused:
        core.create_namespaced_pod(NS, host, dry_run="All")
    assert refused.value.status == 403 and "violates PodSecurity" in refused.value.body
