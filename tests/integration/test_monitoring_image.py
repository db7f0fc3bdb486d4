"""The monitoring image (tools/images.sh, tools/monitoring/install.sh) on the real engine: Debian's
Prometheus 2.42, Alertmanager 0.25 and Pushgateway, one image and three commands, run as uid 990 with a
read-only root and no capability; Prometheus accepts the configuration infra/monitoring_config.py renders,
with every rule file of the repository."""
import docker
import pytest

from infra import monitoring_config as mc
from stacks.config import DEFAULT_MONITORING_IMAGE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(toolchain) -> docker.DockerClient:
    client = docker.DockerClient(base_url=toolchain["docker_host"], timeout=120)
    try:
        client.images.get(DEFAULT_MONITORING_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{DEFAULT_MONITORING_IMAGE} is missing: tools/images.sh builds it (tools/toolchain.sh runs it)")
    return client


def _once(engine, command: list[str]) -> tuple[int, str]:
    container = engine.containers.create(DEFAULT_MONITORING_IMAGE, command, network_mode="none", read_only=True,
                                         cap_drop=["ALL"], security_opt=["no-new-privileges"])
    try:
        container.start()
        code = container.wait(timeout=60)["StatusCode"]
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def test_one_image_three_commands_as_uid_990(engine):
    assert engine.images.get(DEFAULT_MONITORING_IMAGE).attrs["Config"]["User"] == f"{mc.UID}:{mc.GID}"
    for command, version in (("prometheus", "version 2.42"), ("prometheus-alertmanager", "version 0.25"),
                             ("prometheus-pushgateway", "version 1.")):
        code, out = _once(engine, [command, "--version"])
        assert code == 0 and version in out, (command, out)
    code, out = _once(engine, ["id", "-u"])
    assert (code, out.strip()) == (0, str(mc.UID))


def test_prometheus_accepts_the_rendered_configuration_and_the_rules(engine):
    """promtool, from the same package, checks what the stacks give Prometheus (the CA file a placeholder)."""
    rules = mc.rule_files()
    config = mc.prometheus_config(mc.ScrapeTargets(
        vault_nodes=["vault-1:8200"], vault_tls=True, service=["envvars:8080"], pushgateway="pushgateway:9091",
        alertmanager="alertmanager:9093"))
    config = config.replace(mc.RULES_MOUNT, "/tmp" + mc.RULES_MOUNT).replace(mc.VAULT_CA_FILE, "/tmp" + mc.VAULT_CA_FILE)
    script = "\n".join([
        f"mkdir -p /tmp{mc.RULES_MOUNT} /tmp{mc.CONFIG_DIR} && : > /tmp{mc.VAULT_CA_FILE}",
        *[f"cat > /tmp{mc.RULES_MOUNT}/{name} <<'EOF'\n{text}\nEOF" for name, text in rules.items()],
        f"cat > /tmp/prometheus.yml <<'EOF'\n{config}\nEOF",
        "promtool check config /tmp/prometheus.yml",
    ])
    container = engine.containers.create(DEFAULT_MONITORING_IMAGE, ["sh", "-c", script], network_mode="none",
                                         read_only=True, tmpfs={"/tmp": "rw,size=8m,mode=1777"}, cap_drop=["ALL"])
    try:
        container.start()
        code = container.wait(timeout=60)["StatusCode"]
        out = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert code == 0, out
    assert f"SUCCESS: {len(rules)} rule files found" in out
