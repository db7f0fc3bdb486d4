"""tools/stack.sh and tools/ci_deploy.py hand `pulumi` (and so its dynamic providers, which reach the pods
through the Kubernetes API) KUBECONFIG from the stack's `kubeconfig` setting; a stand-in `pulumi` on PATH
reports what it was given."""
import os
import stat
import subprocess

import pytest

from tests.helpers import REPO_ROOT
from tools.lib import kubeconfig

pytestmark = pytest.mark.unit

CONTENT = "apiVersion: v1\nkind: Config\nclusters: []\n"

FAKE_PULUMI = """#!/usr/bin/env bash
case "$1" in
  stack) exit 0 ;;
  config) if [ -n "${FAKE_KUBECONFIG+x}" ]; then printf '%s\\n' "$FAKE_KUBECONFIG"; else exit 1; fi ;;
  preview) echo "KUBECONFIG=${KUBECONFIG-unset}"; [ -f "${KUBECONFIG-}" ] && cat "$KUBECONFIG"; exit 0 ;;
esac
"""


@pytest.fixture
def fake_pulumi(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "pulumi"
    exe.write_text(FAKE_PULUMI)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return monkeypatch


def _stack_sh(setting):
    env = {k: v for k, v in os.environ.items() if k != "FAKE_KUBECONFIG"}
    if setting is not None:
        env["FAKE_KUBECONFIG"] = setting
    done = subprocess.run(["bash", os.path.join(REPO_ROOT, "tools", "stack.sh"), "preview", "prod"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("setting,expected", [
    (None, "KUBECONFIG=unset"),
    ("/etc/cluster/admin.kubeconfig", "KUBECONFIG=/etc/cluster/admin.kubeconfig"),
    (".cluster/kubeconfig/admin.kubeconfig", f"KUBECONFIG={REPO_ROOT}/.cluster/kubeconfig/admin.kubeconfig"),
])
def test_stack_sh_exports_the_stack_kubeconfig_path(fake_pulumi, setting, expected):
    assert _stack_sh(setting).splitlines()[0] == expected


def test_stack_sh_hands_kubeconfig_content_over_as_a_private_file_removed_afterwards(fake_pulumi):
    out = _stack_sh(CONTENT)
    first, *rest = out.splitlines()
    path = first.removeprefix("KUBECONFIG=")
    assert "\n".join(rest) + "\n" == CONTENT
    assert not os.path.exists(path)


@pytest.mark.parametrize("value,content", [
    ("/a/kubeconfig", False), ("kubeconfig.yaml", False), (CONTENT, True), ('{"apiVersion": "v1"}', True)])
def test_ci_deploy_tells_content_from_a_path(value, content):
    assert kubeconfig.is_kubeconfig_content(value) is content


def test_ci_deploy_passes_the_stack_kubeconfig_to_pulumi(fake_pulumi, tmp_path):
    fake_pulumi.chdir(tmp_path)
    fake_pulumi.setenv("FAKE_KUBECONFIG", "kc/admin.kubeconfig")
    with kubeconfig.kubeconfig_env("prod") as env:
        assert env["KUBECONFIG"] == str(tmp_path / "kc" / "admin.kubeconfig")
    fake_pulumi.setenv("FAKE_KUBECONFIG", CONTENT)
    with kubeconfig.kubeconfig_env("prod") as env:
        path = env["KUBECONFIG"]
        assert open(path).read() == CONTENT and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not os.path.exists(path)
    fake_pulumi.delenv("FAKE_KUBECONFIG")
    with kubeconfig.kubeconfig_env("prod") as env:
        assert "KUBECONFIG" not in env
