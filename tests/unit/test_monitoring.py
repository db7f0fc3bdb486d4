"""The monitoring with Pulumi mocks and pure logic: the rendered Prometheus and Alertmanager configurations
(the scrape jobs the rules rely on), the Docker and Kubernetes components, the stack settings, the stacks'
wiring, and the snapshot agent's push to a Pushgateway (a local HTTP server standing in for it)."""
import http.server
import os
import re
import threading

import pulumi
import pytest
import yaml

from infra import monitoring_config as mc
from infra.agents import snapshot_agent
from infra.monitoring_docker import MonitoringDocker, MonitoringDockerArgs
from infra.monitoring_k8s import MonitoringKubernetes, MonitoringKubernetesArgs
from infra.vault_k8s import VaultKubernetes, VaultKubernetesArgs
from stacks import deploy
from stacks.config import ConfigError, DevConfig, ProdConfig
from tests.unit.helpers import run
from tools.lib.versions import toolchain_versions

pytestmark = pytest.mark.unit
CONTRACT_JOBS = ["vault", "envvars-service", "vault-snapshots", "prometheus", "alertmanager"]
RAFT = mc.ScrapeTargets(vault_nodes=["vault-1:8200", "vault-2:8200", "vault-3:8200"], vault_tls=True,
                        service=["envvars:8080"], pushgateway="pushgateway:9091", alertmanager="alertmanager:9093")


def _jobs(text: str) -> dict:
    return {j["job_name"]: j for j in yaml.safe_load(text)["scrape_configs"]}


def test_prometheus_config_has_the_contract_jobs_and_loads_every_rule_file():
    config = yaml.safe_load(mc.prometheus_config(RAFT, interval_seconds=15))
    assert [j["job_name"] for j in config["scrape_configs"]] == CONTRACT_JOBS
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "15s"
    assert config["rule_files"] == ["/rules/*.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    jobs = _jobs(mc.prometheus_config(RAFT))
    vault = jobs["vault"]
    assert vault["metrics_path"] == "/v1/sys/metrics" and vault["params"] == {"format": ["prometheus"]}
    assert vault["scheme"] == "https" and vault["tls_config"] == {"ca_file": "/config/vault-ca.pem"}
    assert vault["static_configs"][0]["targets"] == RAFT.vault_nodes
    assert jobs["vault-snapshots"]["honor_labels"] is True
    assert jobs["vault-snapshots"]["static_configs"][0]["targets"] == ["pushgateway:9091"]
    assert jobs["envvars-service"]["static_configs"][0]["targets"] == ["envvars:8080"]


@pytest.mark.parametrize("address,node", [("vault-2:8200", "vault-2"), ("vault:8200", "vault"),
                                          ("vault-0.vault-internal.vault.svc:8200", "vault-0")])
def test_the_instance_label_names_the_node(address, node):
    (relabel,) = _jobs(mc.prometheus_config(RAFT))["vault"]["relabel_configs"]
    # Prometheus anchors relabel regexes at both ends.
    assert re.sub(f"^(?:{relabel['regex']})$", relabel["replacement"].replace("$1", r"\1"), address) == node


def test_dev_mode_vault_is_scraped_over_http_and_kubernetes_finds_each_replica_by_dns():
    dev = _jobs(mc.prometheus_config(mc.ScrapeTargets(vault_nodes=["vault:8200"], vault_tls=False, service=["envvars:8080"],
                                                      pushgateway="p:9091", alertmanager="a:9093")))
    assert dev["vault"]["scheme"] == "http" and "tls_config" not in dev["vault"]
    k8s = _jobs(mc.prometheus_config(mc.ScrapeTargets(vault_nodes=["v"], vault_tls=True, pushgateway="p:9091",
                                                      alertmanager="a:9093", service_dns=("envvars-metrics.ns.svc", 8080))))
    assert k8s["envvars-service"]["dns_sd_configs"] == [{"names": ["envvars-metrics.ns.svc"], "type": "A", "port": 8080,
                                                          "refresh_interval": "10s"}]


def test_alertmanager_routes_to_the_webhook_or_nowhere():
    hooked = yaml.safe_load(mc.alertmanager_config(mc.AlertRouting(webhook_url="http://hook:8080/alerts")))
    assert hooked["route"]["receiver"] == "webhook" and hooked["route"]["group_wait"] == "10s"
    assert hooked["receivers"] == [{"name": "webhook", "webhook_configs": [
        {"url": "http://hook:8080/alerts", "send_resolved": True}]}]
    silent = yaml.safe_load(mc.alertmanager_config(mc.AlertRouting()))
    assert silent["route"]["receiver"] == "null" and silent["receivers"] == [{"name": "null"}]


def test_rule_files_are_every_rule_file_of_the_repository(tmp_path):
    found = mc.rule_files()
    assert "vault.yml" in found and "VaultNodeDown" in found["vault.yml"]
    assert sorted(found) == sorted(f for f in os.listdir(mc.RULES_DIR) if f.endswith(".yml"))
    with pytest.raises(ValueError, match="no rule files"):
        mc.rule_files(str(tmp_path))


def test_docker_monitoring(mocks):
    run(lambda: MonitoringDocker("mon", MonitoringDockerArgs(
        image="mon:1", network_name="net", targets=RAFT, vault_ca_pem="CA-PEM",
        routing=mc.AlertRouting(webhook_url="http://hook:1/"), prometheus_host_port=19090)))
    containers = {c.name: c.inputs for c in mocks.of_type("docker:Container")}
    assert sorted(containers) == ["mon-alertmanager", "mon-prometheus", "mon-pushgateway"]
    for role, c in containers.items():
        assert c["user"] == "990:990" and c["read_only"] is True and c["cap_drop"] == ["ALL"]
        alias, own = [role.removeprefix("mon-")], {"name": "vault-envvars-dev-mon-net", "aliases": [role.removeprefix("mon-")]}
        # Only Prometheus is on the stack's network: the service (and the jobs sharing its network) reach
        # neither the Alertmanager nor the Pushgateway.
        assert c["networks"] == ([{"name": "net", "aliases": alias}, own] if role == "mon-prometheus" else [own])
        assert all(not p.get("host_ip") for p in c["ports"])  # the provider's default: 127.0.0.1
    prom = containers["mon-prometheus"]
    assert prom["command"][0] == "prometheus" and prom["ports"] == [{"internal": 9090, "external": 19090}]
    assert prom["files"]["/config/vault-ca.pem"] == {"content": "CA-PEM", "mode": 0o444}
    assert "VaultNodeDown" in prom["files"]["/rules/vault.yml"]["content"]
    assert prom["files"]["/prometheus/data"] == {"directory": True, "mode": 0o750}
    assert {v["target"] for v in prom["volumes"]} == {"/config", "/rules", "/prometheus"}
    am = containers["mon-alertmanager"]
    assert am["command"][0] == "prometheus-alertmanager" and am["ports"] == [{"internal": 9093, "external": 0}]
    assert "http://hook:1/" in am["files"]["/config/alertmanager.yml"]["content"]
    # The webhook URL may carry a token: the Alertmanager's files are a secret (encrypted in the state).
    assert "files" in mocks.named("mon-alertmanager").secret_inputs
    assert "http://hook:1/" not in str(am["command"]) + str(am["env"]) + str(am["labels"])
    # On the network (the snapshot agent) and on 127.0.0.1 (`up` reports the config-admin token's expiry).
    assert containers["mon-pushgateway"]["ports"] == [{"internal": 9091, "external": 0}]
    assert len(mocks.of_type("docker:Volume")) == 6
    assert [n.inputs["name"] for n in mocks.of_type("docker:Network")] == ["vault-envvars-dev-mon-net"]


def test_docker_monitoring_of_a_dev_server_has_no_ca(mocks):
    run(lambda: MonitoringDocker("mon", MonitoringDockerArgs(
        image="mon:1", network_name="net", targets=mc.ScrapeTargets(
            vault_nodes=["vault:8200"], vault_tls=False, service=[], pushgateway="p:9091", alertmanager="a:9093"))))
    assert "/config/vault-ca.pem" not in mocks.named("mon-prometheus").inputs["files"]


def _k8s_monitoring(**overrides):
    args = dict(namespace="vault", image="mon:1", vault_namespace="vault", vault_pods=["vault-0", "vault-1", "vault-2"],
                vault_ca_pem="CA-PEM", storage_class="local")
    args.update(overrides)
    return MonitoringKubernetes("monitoring", MonitoringKubernetesArgs(**args))


def test_kubernetes_monitoring(mocks):
    outputs = {}

    def program():
        m = _k8s_monitoring()
        return m.prometheus_url.apply(lambda u: outputs.update(prometheus=u))

    run(program)
    deployments = {d.name: d.inputs["spec"] for d in mocks.of_type("apps/v1:Deployment")}
    assert sorted(deployments) == ["monitoring-alertmanager", "monitoring-prometheus", "monitoring-pushgateway"]
    for spec in deployments.values():
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 990
        assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "monitoring"
        (c,) = pod["containers"]
        assert c["securityContext"] == {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}}
        assert spec["strategy"] == {"type": "Recreate"}
    prom = deployments["monitoring-prometheus"]["template"]
    assert prom["metadata"]["annotations"]["vault-envvars/config-checksum"]
    assert {v["name"]: v for v in prom["spec"]["volumes"]}["data"]["persistentVolumeClaim"] == {"claimName": "prometheus-data"}
    config = mocks.named("monitoring-prometheus-config").inputs["data"]
    assert config["vault-ca.pem"] == "CA-PEM"
    jobs = _jobs(config["prometheus.yml"])
    assert list(jobs) == CONTRACT_JOBS
    assert jobs["vault"]["static_configs"][0]["targets"] == [f"vault-{i}.vault-internal.vault.svc:8200" for i in range(3)]
    assert jobs["vault-snapshots"]["static_configs"][0]["targets"] == ["pushgateway.vault.svc:9091"]
    assert "vault.yml" in mocks.named("monitoring-prometheus-rules").inputs["data"]
    am = mocks.named("monitoring-alertmanager-config")
    assert am.typ == "kubernetes:core/v1:Secret" and "receivers" in am.inputs["stringData"]["alertmanager.yml"]
    am_pod = deployments["monitoring-alertmanager"]["template"]["spec"]
    assert {v["name"]: v for v in am_pod["volumes"]}["config"]["secret"]["secretName"] == "alertmanager-config"
    # Its config checksum (in the pod template, so a changed config rolls the pod) is a secret too.
    assert "spec" in mocks.named("monitoring-alertmanager").secret_inputs
    assert "spec" not in mocks.named("monitoring-prometheus").secret_inputs
    headless = mocks.named("monitoring-service-metrics").inputs
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["selector"] == {"app.kubernetes.io/name": "envvars"}
    assert mocks.named("monitoring-prometheus-data").inputs["spec"]["storageClassName"] == "local"
    assert {s.name for s in mocks.of_type("core/v1:Service")} >= {
        "monitoring-prometheus-svc", "monitoring-alertmanager-svc", "monitoring-pushgateway-svc"}
    assert outputs == {"prometheus": "k8s://vault/svc/prometheus:9090"}
    # Jobs (another namespace) reach none of the three: no silencing alerts, no fake snapshot pushes.
    policy = mocks.named("monitoring-netpol").inputs["spec"]
    assert policy["podSelector"]["matchExpressions"][0]["values"] == ["prometheus", "alertmanager", "pushgateway"]
    assert policy["policyTypes"] == ["Ingress"] and policy["ingress"] == [{"from": [
        {"podSelector": {}}, {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "vault"}}}]}]


def test_vault_network_policy_admits_prometheus_of_another_namespace(mocks):
    run(lambda: VaultKubernetes("vault", VaultKubernetesArgs(namespace="vault", image="i", prometheus_namespace="mon")))
    api_rule = mocks.named("vault-netpol").inputs["spec"]["ingress"][0]
    assert api_rule["ports"] == [{"protocol": "TCP", "port": 8200}]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}} in api_rule["from"]
    assert {"podSelector": {}} in api_rule["from"]  # the Vault namespace's own pods, Prometheus there included
    cluster_rule = mocks.named("vault-netpol").inputs["spec"]["ingress"][1]
    assert "namespaceSelector" not in str(cluster_rule)


def test_monitoring_settings_defaults(mocks):
    mon = DevConfig.load().monitoring
    assert (mon.enabled, mon.webhook_url, mon.interval_seconds, mon.retention) == (True, "", 10, "15d")
    assert (mon.prometheus_host_port, mon.alertmanager_host_port) == (0, 0)
    assert mon.image == toolchain_versions()["DEFAULT_MONITORING_IMAGE"] == "localhost/vault-envvars/monitoring:bookworm-r1"


@pytest.mark.parametrize("mocks,message", [
    ({"monitoring": "yes"}, "vault-envvars:monitoring = 'yes' is not allowed; allowed values: true, false"),
    ({"alertWebhookUrl": "hook:8080"}, "vault-envvars:alertWebhookUrl = 'hook:8080' is not allowed; allowed values: an http"),
    ({"scrapeInterval": "1s"}, "vault-envvars:scrapeInterval is out of range; allowed values: 5s-5m"),
    ({"scrapeInterval": "soon"}, "vault-envvars:scrapeInterval = "),
    ({"prometheusRetention": "15 days"}, "vault-envvars:prometheusRetention = '15 days' is not allowed"),
    ({"prometheusHostPort": "99999"}, "vault-envvars:prometheusHostPort = 99999 is out of range"),
    ({"alertmanagerHostPort": "x"}, "vault-envvars:alertmanagerHostPort = 'x' is not a port number"),
    ({"monitoringNamespace": "Mon_1"}, "vault-envvars:monitoringNamespace = 'Mon_1' is not a namespace name"),
], indirect=["mocks"])
def test_bad_monitoring_settings_name_the_key(mocks, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        DevConfig.load()
    with pytest.raises(ConfigError, match=re.escape(message)):
        ProdConfig.load()


@pytest.mark.parametrize("mocks", [{"vaultMode": "raft", "alertWebhookUrl": "http://receiver:8080/",
                                    "prometheusHostPort": "19090", "scrapeInterval": "15s"}], indirect=True)
def test_dev_raft_stack_scrapes_every_node_and_the_snapshot_agent_pushes(mocks):
    outputs = {}
    run(lambda: outputs.update(deploy("dev")))
    prom = mocks.named("monitoring-prometheus").inputs
    jobs = _jobs(prom["files"]["/config/prometheus.yml"]["content"])
    assert jobs["vault"]["static_configs"][0]["targets"] == ["vault-1:8200", "vault-2:8200", "vault-3:8200"]
    assert jobs["vault"]["scheme"] == "https" and prom["files"]["/config/vault-ca.pem"]["content"] == "CA-PEM"
    assert yaml.safe_load(prom["files"]["/config/prometheus.yml"]["content"])["global"]["scrape_interval"] == "15s"
    assert prom["ports"] == [{"internal": 9090, "external": 19090}]
    assert prom["networks"][0]["name"] == "vault-envvars-dev-vault-net"
    am = mocks.named("monitoring-alertmanager").inputs["files"]["/config/alertmanager.yml"]["content"]
    assert yaml.safe_load(am)["receivers"][0]["webhook_configs"][0]["url"] == "http://receiver:8080/"
    cmd = _agent_command(mocks)
    assert cmd[cmd.index("--pushgateway") + 1] == "http://pushgateway:9091"
    (agent,) = [c for c in mocks.of_type("docker:Container") if c.name == "vault-snapshots-agent"]
    assert [n["name"] for n in agent.inputs["networks"]][1:] == [f"vault-envvars-{pulumi.get_stack()}-monitoring-net"]
    assert {"prometheus_url", "alertmanager_url"} <= set(outputs)


def _agent_command(mocks) -> list:
    (agent,) = [c for c in mocks.of_type("docker:Container") if c.name == "vault-snapshots-agent"]
    return agent.inputs["command"]


@pytest.mark.parametrize("mocks", [{"monitoring": "false", "vaultMode": "raft"}], indirect=True)
def test_monitoring_can_be_switched_off(mocks):
    outputs = {}
    run(lambda: outputs.update(deploy("dev")))
    assert not mocks.of_type("MonitoringDocker") and "prometheus_url" not in outputs
    cmd = _agent_command(mocks)
    assert cmd[cmd.index("--pushgateway") + 1] == ""
    (agent,) = [c for c in mocks.of_type("docker:Container") if c.name == "vault-snapshots-agent"]
    assert len(agent.inputs["networks"]) == 1


@pytest.mark.parametrize("mocks", [{"jwksUrl": "https://idp.example/keys", "jwtIssuer": "https://idp.example",
                                    "databaseUrl": "postgresql://x", "monitoringNamespace": "monitoring"}], indirect=True)
def test_prod_monitoring_in_its_own_namespace(mocks):
    run(lambda: deploy("prod"))
    assert mocks.named("monitoring-namespace").inputs["metadata"]["name"] == "monitoring"
    assert mocks.named("monitoring-prometheus").inputs["metadata"]["namespace"] == "monitoring"
    # The headless Service over the service's replicas lives beside them, in the Vault namespace.
    assert mocks.named("monitoring-service-metrics").inputs["metadata"]["namespace"] == "vault"
    api_from = mocks.named("vault-netpol").inputs["spec"]["ingress"][0]["from"]
    assert any(p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "monitoring"
               for p in api_from)
    cron = mocks.named("vault-snapshots-cronjob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    cmd = cron["containers"][0]["command"]
    assert cmd[cmd.index("--pushgateway") + 1] == "http://pushgateway.monitoring.svc:9091"


class _Pushgateway(http.server.BaseHTTPRequestHandler):
    pushes: list = []

    def do_PUT(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.pushes.append((self.path, body))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def pushgateway():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pushgateway)
    _Pushgateway.pushes = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", _Pushgateway.pushes
    server.shutdown()


def _args(folder, pushgateway_url):
    return snapshot_agent.argparse.Namespace(dir=str(folder), pushgateway=pushgateway_url)


def test_snapshot_agent_pushes_the_newest_verified_snapshot_time_and_the_run_outcome(tmp_path, pushgateway, capsys):
    url, pushes = pushgateway
    snapshot_agent.record(_args(tmp_path, url), {"status": "failed", "error": "no snapshot yet"})
    (tmp_path / "vault-raft-20260101T000000.000000Z.snap").write_bytes(b"x")
    os.utime(tmp_path / "vault-raft-20260101T000000.000000Z.snap", (1_700_000_000, 1_700_000_000))
    snapshot_agent.record(_args(tmp_path, url), {"status": "ok"})
    snapshot_agent.record(_args(tmp_path, url), {"status": "failed", "error": "sealed"})
    assert [p for p, _ in pushes] == ["/metrics/job/vault-snapshots"] * 3
    first, ok, failed = (body for _, body in pushes)
    assert "vault_snapshot_last_run_success 0" in first and "vault_snapshot_last_success" not in first
    assert "vault_snapshot_last_run_success 1" in ok and "vault_snapshot_last_success 1700000000\n" in ok
    # A failed run after a good one: the last success stays the kept snapshot's time.
    assert "vault_snapshot_last_run_success 0" in failed and "vault_snapshot_last_success 1700000000\n" in failed
    assert (tmp_path / "snapshot.prom").read_text() == failed
    assert '"pushed": true' in capsys.readouterr().out


def test_a_failed_push_is_reported_and_does_not_fail_the_run(tmp_path, capsys):
    snapshot_agent.record(_args(tmp_path, "http://127.0.0.1:1"), {"status": "ok"})
    line = capsys.readouterr().out
    assert '"status": "ok"' in line and '"pushed": false' in line and "push_error" in line
    assert "vault_snapshot_last_run_success 1" in (tmp_path / "snapshot.prom").read_text()
