"""The dev stack for real on the local engine, in both modes: `pulumi up`, the cluster's shape, a leader
failover measured while writes go on, a restarted node unsealed by the next `up`, and `destroy`
leaving nothing behind."""
import hashlib
import json
import os
import subprocess
import sys
import time

import docker
import hvac
import pytest
import requests
from pulumi import automation as auto

from devkit.browser import shot, sign_in
from devkit.service_process import wait_execution
from tests.conftest import REPO_ROOT
from tests.e2e.container_checks import check_container
from tools.dev_token import id_token

pytestmark = pytest.mark.e2e
PROGRAM = "e2e/programs/dev_stack"
# The service container's only capabilities: CAP_KILL, CAP_SETGID, CAP_SETUID (its jobs' sandbox).
SANDBOX_CAPS = (1 << 5) | (1 << 6) | (1 << 7)


def _engine(toolchain) -> docker.DockerClient:
    return docker.DockerClient(base_url=toolchain["docker_host"])


def _leftovers(engine, stack_name) -> dict:
    flt = {"label": f"vault-envvars.stack={stack_name}"}
    return {"containers": [c.name for c in engine.containers.list(all=True, filters=flt)],
            "networks": [n.name for n in engine.networks.list(filters=flt)],
            "volumes": [v.name for v in engine.volumes.list(filters=flt)]}


def test_dev_mode_vault_and_service_up_idempotent_and_destroyed(throwaway_stack, toolchain, new_page):
    s = throwaway_stack(PROGRAM)
    out = {k: v.value for k, v in s.up().outputs.items()}
    vault = hvac.Client(url=out["vault_address"], token=out["vault_root_token"])
    assert vault.sys.read_health_status(method="GET")["sealed"] is False
    assert "jwt/" in vault.sys.list_auth_methods()["data"]
    assert vault.sys.read_acl_policy("user")["data"]["policy"]

    # The service, as a user would: tokens from the dev identity provider, over HTTP.
    url = out["service_url"]
    assert requests.get(f"{url}/readyz", timeout=10).json() == {"ready": True, "vault": "ok", "database": "ok"}
    alice = {"Authorization": f"Bearer {id_token(out, 'alice')}"}
    bob = {"Authorization": f"Bearer {id_token(out, 'bob')}"}
    value = "multi\nline = value ✓"
    ev = requests.post(f"{url}/api/v2/user/env-vars", json={"name": "SECRET_ONE", "value": value}, headers=alice,
                       timeout=10)
    assert ev.status_code == 201, ev.text
    script = "import hashlib,os; print(hashlib.sha256(os.environb[b'SECRET_ONE']).hexdigest()); print(os.environ['SECRET_ONE'])"
    run = requests.post(f"{url}/api/v2/execution", json={"command": ["python3", "-c", script],
                                                        "env_var_ids": [ev.json()["id"]]}, headers=alice, timeout=10)
    assert run.status_code == 202
    done = wait_execution(url, alice, run.json()["id"])
    assert done["status"] == "succeeded"
    assert hashlib.sha256(value.encode()).hexdigest() in done["output"] and value not in done["output"]
    # Inside the service's container, the job's sandbox hides the service's files and processes.
    probe = ("import os\nfor p in ('/run/envvars', '/data', '/app', '/proc'):\n    print(p, os.path.exists(p))\n"
             "print('uid', os.getuid(), 'pid', os.getpid())")
    run = requests.post(f"{url}/api/v2/execution", json={"command": ["python3", "-c", probe]}, headers=alice,
                        timeout=10)
    seen = wait_execution(url, alice, run.json()["id"])["output"]
    assert "/run/envvars False" in seen and "/data False" in seen and "/app False" in seen, seen
    assert "/proc False" in seen and "uid 2000" in seen and "pid 2\n" in seen, seen  # its own PID namespace
    assert requests.get(f"{url}/api/v2/user/env-vars", headers=bob, timeout=10).json()["total"] == 0
    assert requests.get(f"{url}/api/v2/user/env-vars/{ev.json()['id']}", headers=bob, timeout=10).status_code == 404

    # The dashboard at the printed URL: sign in through the Vault UI in a browser, as alice, and see the
    # env var made through the API (the same identity both ways).
    assert out["dashboard_url"] == f"{url}/dashboard/"
    page = new_page()
    sign_in(page, url, out["vault_address"], "alice", out["demo_user_passwords"]["alice"])
    assert page.get_by_test_id("user").inner_text() == "alice"
    assert page.locator("tbody tr").all_inner_texts()[0].startswith("SECRET_ONE")
    shot(page, "dev-stack-signed-in")
    # No secret in any container's configuration.
    engine = _engine(toolchain)
    inspected = json.dumps([c.attrs for c in engine.containers.list(filters={"label": f"vault-envvars.stack={s.name}"})])
    for secret in (value, out["oidc_client_secret"], *out["demo_user_passwords"].values()):
        assert secret not in inspected
    prefix = f"dev-stack-{s.name}"
    check_container(f"{prefix}-vault", {8200, 8201}, {})
    check_container(f"{prefix}-envvars-api", {8080}, {"/run/envvars/approle-secret-id": 0o400,
                                                     "/run/envvars/oidc-client-secret": 0o400,
                                                     "/run/envvars/session-key": 0o400},
                    root_caps=SANDBOX_CAPS)

    assert s.changes_of_second_up() == {}
    # What `make up` checks last passes; once the service cannot reach Vault it fails, naming the check,
    # with the service's last log lines.
    assert _stack_check(s).returncode == 0
    api = engine.containers.get(f"{prefix}-envvars-api")
    for network in api.attrs["NetworkSettings"]["Networks"]:
        engine.networks.get(network).disconnect(api)
    broken = _stack_check(s, wait=3)
    assert broken.returncode == 1 and "CHECK FAILED: the service's /readyz" in broken.stderr, broken.stderr
    assert f"last lines of {prefix}-envvars-api" in broken.stderr
    s.destroy()
    assert _leftovers(_engine(toolchain), s.name) == {"containers": [], "networks": [], "volumes": []}


def _stack_check(s, wait: float = 30) -> subprocess.CompletedProcess:
    """tools/stack_check.py on a throwaway stack, as `make up` runs it."""
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "tools", "stack_check.py"), s.name,
                           "--wait", str(wait)], cwd=s.work_dir, capture_output=True, text=True,
                          env={**os.environ, **s.env, "PYTHONPATH": REPO_ROOT}, timeout=300)


def _client(address, token, ca_file) -> hvac.Client:
    return hvac.Client(url=address, token=token, verify=ca_file, timeout=3)


def _write_anywhere(nodes, token, ca_file, path, value) -> bool:
    for address in nodes:
        try:
            _client(address, token, ca_file).secrets.kv.v2.create_or_update_secret(
                path=path, secret={"value": value}, mount_point="secret")
            return True
        except (requests.RequestException, hvac.exceptions.VaultError):
            continue
    return False


def test_raft_mode_failover_rejoin_and_destroy(throwaway_stack, toolchain, tmp_path, new_page):
    engine = _engine(toolchain)
    s = throwaway_stack(PROGRAM)
    s.stack.set_config("vault-envvars:vaultMode", auto.ConfigValue("raft"))
    out = {k: v.value for k, v in s.up().outputs.items()}
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(out["vault_ca_cert"])
    ca_file = str(ca_file)
    nodes, root = out["vault_nodes"], out["vault_root_token"]
    assert len(nodes) == 3
    # The dashboard signs in over TLS: the browser through node 1's UI (the dev cluster's own CA, which
    # this browser does not know), the service to the issuer with the stack's CA.
    assert requests.get(f"{out['service_url']}/readyz", timeout=10).json()["ready"] is True
    page = new_page(ignore_https_errors=True)
    sign_in(page, out["service_url"], nodes[0], "bob", out["demo_user_passwords"]["bob"])
    assert page.get_by_test_id("user").inner_text() == "bob"

    # Three peers, all voters, exactly one leader.
    raft = _client(nodes[0], root, ca_file).sys.read_raft_config()["data"]["config"]["servers"]
    assert len(raft) == 3 and all(p["voter"] for p in raft)
    assert sum(1 for p in raft if p["leader"]) == 1
    autopilot = _client(nodes[0], root, ca_file).read("sys/storage/raft/autopilot/configuration")["data"]
    assert autopilot["cleanup_dead_servers"] is True and autopilot["min_quorum"] == 3
    assert s.changes_of_second_up() == {}
    ok = _stack_check(s)  # every node over TLS with the stack's CA, the service, the sign-in
    assert ok.returncode == 0 and ok.stdout.count("ok: Vault at") == 3, ok.stdout + ok.stderr

    prefix = f"dev-stack-{s.name}"
    for i in range(1, 4):
        check_container(f"{prefix}-vault-vault-{i}", {8200, 8201},
                        {"/bao/config/tls.key": 0o400, "/bao/config/server.hcl": 0o400, "/bao/data": 0o750})
    check_container(f"{prefix}-vault-snapshots-agent", set(), {"/agent/secret_id": 0o400, "/data/snapshots": 0o750})
    check_container(f"{prefix}-envvars-api", {8080}, {"/run/envvars/approle-secret-id": 0o400,
                                                     "/run/envvars/vault-ca.pem": 0o444,
                                                     "/run/envvars/oidc-ca.pem": 0o444,
                                                     "/run/envvars/session-key": 0o400},
                    root_caps=SANDBOX_CAPS)
    # TLS is what the nodes serve: the stack's CA verifies them, plain HTTP is refused.
    for address in nodes:
        assert requests.get(f"{address}/v1/sys/health?standbyok=true", verify=ca_file, timeout=5).status_code == 200
        with pytest.raises(requests.RequestException):
            requests.get(address.replace("https://", "http://") + "/v1/sys/health", timeout=5).raise_for_status()

    for i in range(20):
        assert _write_anywhere(nodes, root, ca_file, f"users/failover/before-{i}", f"b{i}")

    # Stop the leader's container; time until another node accepts a write.
    leader_id = next(p["node_id"] for p in raft if p["leader"])
    leader = engine.containers.list(filters={"label": [f"vault-envvars.stack={s.name}",
                                                       f"vault-envvars.node={leader_id}"]})[0]
    survivors = [n for n, c in zip(nodes, _node_containers(engine, s.name), strict=True) if c.name != leader.name]
    leader.kill()
    t0 = time.monotonic()
    written_during = 0
    while not _write_anywhere(survivors, root, ca_file, "users/failover/during-0", "d0"):
        assert time.monotonic() - t0 < 60, "no new leader accepted a write within 60 s"
        time.sleep(0.05)
    failover = time.monotonic() - t0
    print(f"\nfailover: a new leader accepted a write {failover:.2f} s after the leader was killed")
    for i in range(1, 30):
        assert _write_anywhere(survivors, root, ca_file, f"users/failover/during-{i}", f"d{i}")
        written_during += 1

    # The old leader restarts sealed; the next `up` unseals it and it rejoins.
    leader.start()
    assert s.up().summary.resource_changes.get("update") == 1
    def rejoined():
        state = _client(survivors[0], root, ca_file).read("sys/storage/raft/autopilot/state")["data"]
        return state["healthy"] and len(state["servers"]) == 3 and all(
            v["healthy"] and v["status"] in ("leader", "voter") for v in state["servers"].values())
    _wait(rejoined, 60)

    # Every write, before and during the outage, is there, read through the rejoined node too.
    rejoined_node = next(n for n, c in zip(nodes, _node_containers(engine, s.name), strict=True)
                         if c.name == leader.name)
    for address in (survivors[0], rejoined_node):
        kv = _client(address, root, ca_file).secrets.kv.v2
        for prefix, n in (("before", 20), ("during", written_during + 1)):
            for i in range(n):
                got = kv.read_secret_version(path=f"users/failover/{prefix}-{i}", mount_point="secret",
                                             raise_on_deleted_version=True)
                assert got["data"]["data"]["value"] == f"{prefix[0]}{i}"

    s.destroy()
    assert _leftovers(engine, s.name) == {"containers": [], "networks": [], "volumes": []}


def _node_containers(engine, stack_name) -> list:
    """The node containers in node order (vault-1, vault-2, ...), the order of the `vault_nodes` output."""
    found = engine.containers.list(all=True, filters={"label": f"vault-envvars.stack={stack_name}"})
    by_node = {c.labels.get("vault-envvars.node"): c for c in found if c.labels.get("vault-envvars.node")}
    return [by_node[k] for k in sorted(by_node)]


def _wait(check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, hvac.exceptions.VaultError, KeyError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"condition not met within {timeout} s")
