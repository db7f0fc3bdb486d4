"""The `existing` composition as a newcomer tries it: the "Pointing it at an existing Vault" example of
docs/stacks.md, run as written (bash, the real CLI, the project's own `__main__.py`), against a plain
`bao server -dev`."""
import os
import re
import secrets
import subprocess

import hvac
import pytest

from devkit import procs
from devkit.net import free_port
from infra.clients import vault_ops
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.e2e

SECTION = "## Pointing it at an existing Vault"


def readme_example() -> str:
    """The first shell block of that section of docs/stacks.md, as a user copies it."""
    with open(os.path.join(REPO_ROOT, "docs", "stacks.md")) as f:
        section = f.read().split(SECTION, 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def plain_dev_server(toolchain, tmp_path):
    """`bao server -dev` with nothing else: KV v2 at secret/, no audit device, a root token."""
    port, token = free_port(), f"root-{secrets.token_hex(8)}"
    proc = procs.start([toolchain["bao"], "server", "-dev", f"-dev-root-token-id={token}",
                        f"-dev-listen-address=127.0.0.1:{port}"], str(tmp_path / "bao.log"))
    address = f"http://127.0.0.1:{port}"
    try:
        vault_ops.wait_until(lambda: vault_ops.is_active(address), 30, f"{address} to serve", interval=0.1)
        yield address, token
    finally:
        procs.stop(proc)


def _checkout(folder) -> str:
    """The project as a user's checkout, in a folder of its own (its files linked), so the stack's
    Pulumi.<stack>.yaml lands there, never in this checkout."""
    os.makedirs(folder)
    for name in os.listdir(REPO_ROOT):
        if not (name.startswith("Pulumi.") and name != "Pulumi.yaml") and name not in (".git", ".pulumi"):
            os.symlink(os.path.join(REPO_ROOT, name), os.path.join(folder, name))
    return str(folder)


def _user_shell(server: tuple[str, str], state) -> dict[str, str]:
    """A user's environment after starting the dev server (its BAO_ADDR and BAO_TOKEN exported), with a
    state backend and passphrase of its own."""
    os.makedirs(state)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG_PASSPHRASE")}
    env.update(BAO_ADDR=server[0], BAO_TOKEN=server[1], PULUMI_BACKEND_URL=f"file://{state}",
               PULUMI_CONFIG_PASSPHRASE=secrets.token_urlsafe(16))
    return env


def _run(script: str, cwd: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_readme_example_against_a_plain_dev_server(plain_dev_server, tmp_path):
    example = readme_example()
    assert "adoptKvMount" in example and "pulumi up" in example
    root = hvac.Client(url=plain_dev_server[0], token=plain_dev_server[1])
    canary = f"canary-{secrets.token_hex(8)}"
    root.secrets.kv.v2.create_or_update_secret(path="before/kept", secret={"v": canary}, mount_point="secret")

    # Without the adoptKvMount line: the first `up` fails with Vault's words and names what resolves them.
    first = _checkout(tmp_path / "first")
    without = "\n".join(line for line in example.splitlines() if "adoptKvMount" not in line)
    first_env = _user_shell(plain_dev_server, tmp_path / "first-state")
    failed = _run(without, first, first_env)
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0, out[-3000:]
    assert "path is already in use at secret/" in out, out[-3000:]
    assert "vault-envvars:adoptKvMount" in out and "vault-envvars:kvPath" in out, out[-3000:]
    assert plain_dev_server[1] not in out and canary not in out
    # What that `up` made besides (the auth methods, the policies) goes, as a user would clean up.
    cleaned = _run("source .toolchain/env.sh && pulumi destroy --yes --non-interactive -s existing-try",
                   first, first_env)
    assert cleaned.returncode == 0, (cleaned.stdout + cleaned.stderr)[-3000:]

    # As written: it works, on the dev server's own KV v2 mount, whose values stay.
    second = _checkout(tmp_path / "second")
    second_env = _user_shell(plain_dev_server, tmp_path / "second-state")
    done = _run(example, second, second_env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert plain_dev_server[1] not in out and canary not in out
    assert root.secrets.kv.v2.read_secret_version(path="before/kept", mount_point="secret",
                                                  raise_on_deleted_version=True)["data"]["data"] == {"v": canary}
    assert root.secrets.kv.v2.read_configuration(mount_point="secret")["data"]["max_versions"] == 10
    auth = root.sys.list_auth_methods()["data"]
    assert auth["approle/"]["type"] == "approle" and auth["jwt/"]["type"] == "jwt"
    assert {"user", "executor", "snapshot-operator", "config-admin"} <= set(root.sys.list_acl_policies()["data"]["keys"])
    unchanged = _run("source .toolchain/env.sh && pulumi preview --expect-no-changes --non-interactive",
                     second, second_env)
    assert unchanged.returncode == 0, (unchanged.stdout + unchanged.stderr)[-3000:]

    # The adopted mount was there before: destroy takes what the stack made and leaves it, values and all.
    gone = _run("source .toolchain/env.sh && pulumi destroy --yes --non-interactive", second, second_env)
    assert gone.returncode == 0, (gone.stdout + gone.stderr)[-3000:]
    assert "approle/" not in root.sys.list_auth_methods()["data"]
    assert root.secrets.kv.v2.read_secret_version(path="before/kept", mount_point="secret",
                                                  raise_on_deleted_version=True)["data"]["data"] == {"v": canary}
