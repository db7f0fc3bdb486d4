"""The dev stack for real on the local engine, in both modes: `pulumi up`, the cluster's shape, a leader
failover measured while writes go on, the node-down alert fired by the real Prometheus and delivered by the
real Alertmanager to a webhook receiver the test runs (timed), a restarted node unsealed by the next `up`,
and `destroy` leaving nothing behind."""
import contextlib
import datetime
import hashlib
import json
import secrets
import time

import docker
import hvac
import pytest
import requests
from pulumi import automation as auto

from devkit.browser import shot, sign_in
from devkit.service_process import wait_execution
from stacks.config import DEFAULT_BASE_IMAGE
from tests.e2e.container_checks import check_container
from tests.e2e.dev_dynamic_env_vars import check_dynamic_env_var_in_dashboard
from tests.e2e.helpers import DEV_STACK_PROGRAM, stack_check, vault_client
from tools.dev_token import id_token

pytestmark = pytest.mark.e2e
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
    s = throwaway_stack(DEV_STACK_PROGRAM)
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
    _history_import_rerun_and_activity(url, alice, ev.json()["id"], run.json()["id"], value, script)
    # Inside the service's container, the job's sandbox hides the service's files and processes.
    probe = ("import os\nfor p in ('/run/envvars', '/data', '/app', '/proc'):\n    print(p, os.path.exists(p))\n"
             "print('uid', os.getuid(), 'pid', os.getpid())")
    run = requests.post(f"{url}/api/v2/execution", json={"command": ["python3", "-c", probe]}, headers=alice,
                        timeout=10)
    seen = wait_execution(url, alice, run.json()["id"])["output"]
    assert "/run/envvars False" in seen and "/data False" in seen and "/app False" in seen, seen
    assert "/proc False" in seen and "uid 2000" in seen and "pid 2\n" in seen, seen  # its own PID namespace
    # A job (sharing the service container's network) as an attacker of the monitoring: it must not reach
    # the Alertmanager (it could silence every alert) nor the Pushgateway (a snapshot that never happened).
    reach = ("import socket\nfor host, port in (('alertmanager', 9093), ('pushgateway', 9091), ('prometheus', 9090)):\n"
             "    try:\n        socket.create_connection((host, port), timeout=3).close(); print(host, 'reached')\n"
             "    except OSError as e:\n        print(host, 'unreachable', type(e).__name__)")
    run = requests.post(f"{url}/api/v2/execution", json={"command": ["python3", "-c", reach]}, headers=alice,
                        timeout=10)
    seen = wait_execution(url, alice, run.json()["id"])["output"]
    assert "alertmanager unreachable" in seen and "pushgateway unreachable" in seen, seen
    assert "prometheus reached" in seen, seen  # the check can see a reachable host: Prometheus scrapes the service
    assert requests.get(f"{url}/api/v2/user/env-vars", headers=bob, timeout=10).json()["total"] == 0
    assert requests.get(f"{url}/api/v2/user/env-vars/{ev.json()['id']}", headers=bob, timeout=10).status_code == 404

    # The dashboard at the printed URL: sign in through the Vault UI in a browser, as alice, and see the
    # env var made through the API (the same identity both ways).
    assert out["dashboard_url"] == f"{url}/dashboard/"
    page = new_page()
    sign_in(page, url, out["vault_address"], "alice", out["demo_user_passwords"]["alice"])
    assert page.get_by_test_id("user").inner_text() == "alice"
    assert [t.split("\t")[0] for t in page.locator("tbody tr").all_inner_texts()] == ["FRESH_ONE", "SECRET_ONE"]
    shot(page, "dev-stack-signed-in")
    # Dynamic env vars out of the box: the stack's PostgreSQL, `readonly` granted to alice, not to bob.
    bob_page = new_page()
    sign_in(bob_page, url, out["vault_address"], "bob", out["demo_user_passwords"]["bob"])
    check_dynamic_env_var_in_dashboard(page, bob_page, out, _engine(toolchain))
    # No secret in any container's configuration.
    engine = _engine(toolchain)
    inspected = json.dumps([c.attrs for c in engine.containers.list(filters={"label": f"vault-envvars.stack={s.name}"})])
    for secret in (value, out["oidc_client_secret"], *out["demo_user_passwords"].values()):
        assert secret not in inspected
    prefix = f"dev-stack-{s.name}"
    check_container(f"{prefix}-vault", {8200, 8201}, {})
    check_container(f"{prefix}-envvars-api", {8080}, {"/run/envvars/approle-secret-id": 0o400,
                                                     "/run/envvars/oidc-client-secret": 0o400,
                                                     "/run/envvars/session-key": 0o400,
                                                     "/run/envvars/vault-login-key": 0o400},
                    root_caps=SANDBOX_CAPS)
    check_container(f"{prefix}-postgres-server", {5432}, {"/run/secrets/postgres/password": 0o400})

    # The monitoring: Prometheus scrapes the dev server (no token: dev mode serves its metrics openly) and
    # the service; the three monitoring containers run as their own user and listen on their port only.
    _wait(lambda: _targets(out["prometheus_url"], "vault") == {"vault": "up"}, 60)
    _wait(lambda: _targets(out["prometheus_url"], "envvars-service") == {"envvars": "up"}, 60)
    assert requests.get(f"{out['alertmanager_url']}/-/ready", timeout=5).status_code == 200
    # Vault's metrics, open to any caller on its network, and what Prometheus stored: no value in them.
    metrics = requests.get(f"{out['vault_address']}/v1/sys/metrics", params={"format": "prometheus"}, timeout=5)
    assert metrics.status_code == 200 and "vault_core_unsealed" in metrics.text
    stored = requests.get(f"{out['prometheus_url']}/api/v1/query", params={"query": '{job=~"vault|envvars-service"}'},
                          timeout=10).text
    for text in (metrics.text, stored):
        assert value not in text and json.dumps(value)[1:-1] not in text
    for role, port in (("prometheus", 9090), ("alertmanager", 9093), ("pushgateway", 9091)):
        check_container(f"{prefix}-monitoring-{role}", {port}, {})

    assert s.changes_of_second_up() == {}
    assert s.changes_of_second_up(refresh=True) == {}  # as `make up` runs it: what it reads back is what it wrote
    # What `make up` checks last passes; once the service cannot reach Vault it fails, naming the check,
    # with the service's last log lines.
    assert stack_check(s).returncode == 0
    api = engine.containers.get(f"{prefix}-envvars-api")
    for network in api.attrs["NetworkSettings"]["Networks"]:
        engine.networks.get(network).disconnect(api)
    broken = stack_check(s, wait=3)
    assert broken.returncode == 1 and "CHECK FAILED: the service's /readyz" in broken.stderr, broken.stderr
    assert f"last lines of {prefix}-envvars-api" in broken.stderr
    s.destroy()
    assert _leftovers(_engine(toolchain), s.name) == {"containers": [], "networks": [], "volumes": []}


def _history_import_rerun_and_activity(url: str, user: dict, env_var_id: str, first_run: str, first_value: str,
                                       script: str) -> None:
    """Issue 16's features through the stack's own service container: a .env import overwriting a value,
    its versions, a rollback, a rerun of the first job with the versions it had, expiry and the activity."""
    api = f"{url}/api/v2/user/env-vars"
    imported = f"imported-{secrets.token_hex(8)}"
    dotenv = f'export SECRET_ONE="{imported}\\nline two"\nFRESH_ONE=fresh # a comment\n'
    preview = requests.post(f"{api}/import/preview", json={"text": dotenv}, headers=user, timeout=10).json()
    assert [(e["line"], e["name"], e["status"]) for e in preview["entries"]] == [
        (1, "SECRET_ONE", "existing"), (2, "FRESH_ONE", "new")]
    r = requests.post(f"{api}/import", json={"text": dotenv, "decisions": {"SECRET_ONE": "overwrite"}},
                      headers=user, timeout=20)
    assert r.status_code == 200 and (r.json()["created"], r.json()["overwritten"]) == (1, 1), r.text
    history = requests.get(f"{api}/{env_var_id}/versions", headers=user, timeout=10).json()
    assert [(v["version"], v["author"]) for v in history["items"]] == [(2, "user"), (1, "user")]
    r = requests.post(f"{api}/{env_var_id}/rollback", json={"version": 1}, headers=user, timeout=10)
    assert r.status_code == 200 and (r.json()["version"], r.json()["rolled_back_from"]) == (3, 1), r.text
    # The first job received version 1; its rerun with the same versions gets that value again.
    first = requests.get(f"{url}/api/v2/execution/{first_run}", headers=user, timeout=10).json()
    assert [(e["name"], e["kv_version"]) for e in first["env_vars"]] == [("SECRET_ONE", 1)]
    rerun = requests.post(f"{url}/api/v2/execution/{first_run}/rerun", json={"versions": "same"}, headers=user,
                          timeout=10)
    assert rerun.status_code == 202, rerun.text
    again = wait_execution(url, user, rerun.json()["id"])
    assert again["status"] == "succeeded" and hashlib.sha256(first_value.encode()).hexdigest() in again["output"]
    soon = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)).isoformat()
    assert requests.put(f"{api}/{env_var_id}", json={"expires_at": soon}, headers=user, timeout=10).status_code == 200
    expiring = requests.get(api, params={"expiring_within_days": 7}, headers=user, timeout=10).json()
    assert [e["name"] for e in expiring["items"]] == ["SECRET_ONE"] and expiring["items"][0]["last_used_at"]
    activity = requests.get(f"{url}/api/v2/user/activity", headers=user, timeout=10).json()["items"]
    actions = {e["action"] for e in activity}
    assert {"env_var.import", "env_var.rollback", "execution.run"} <= actions, actions
    assert imported not in json.dumps(activity) and first_value not in json.dumps(activity)


def _write_anywhere(nodes, token, ca_file, path, value) -> bool:
    for address in nodes:
        try:
            vault_client(address, token, ca_file).secrets.kv.v2.create_or_update_secret(
                path=path, secret={"value": value}, mount_point="secret")
            return True
        except (requests.RequestException, hvac.exceptions.VaultError):
            continue
    return False


@pytest.fixture
def alert_receiver(toolchain):
    """alert_receiver(network, stack_name) -> a webhook receiver container on that network; removed at the
    end (before the stack's destroy, which could not remove a network still in use)."""
    engine, made = _engine(toolchain), []

    def start(network: str, stack_name: str):
        made.append(_start_receiver(engine, network, stack_name))
        return made[-1]

    yield start
    for c in made:
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)


@pytest.fixture
def s3_beside(toolchain, tmp_path):
    """A real S3 server (the Versity gateway the toolchain builds) in a container of the base image on a
    network of its own, `s3` there, published on loopback for the test; removed at the end."""
    from devkit.s3_server import S3Server, versitygw_binary

    engine, tag = _engine(toolchain), secrets.token_hex(4)
    network = engine.networks.create(f"s3-net-{tag}", labels={"vault-envvars.test": tag})
    volume = engine.volumes.create(f"s3-data-{tag}", labels={"vault-envvars.test": tag})
    server = S3Server(versitygw_binary(), "/data", 0)
    container = engine.containers.run(
        DEFAULT_BASE_IMAGE, ["/usr/local/bin/versitygw", "--port", ":7070", "posix", "/data"], detach=True,
        name=f"s3-{tag}", network=network.name, cap_drop=["ALL"],
        networking_config={network.name: engine.api.create_endpoint_config(aliases=["s3"])},
        environment={"ROOT_ACCESS_KEY": server.access_key_id, "ROOT_SECRET_KEY": server.secret_access_key},
        volumes={server.binary: {"bind": "/usr/local/bin/versitygw", "mode": "ro"},
                 volume.name: {"bind": "/data", "mode": "rw"}},
        ports={"7070/tcp": ("127.0.0.1", None)}, labels={"vault-envvars.test": tag})
    container.reload()
    server.port = int(container.attrs["NetworkSettings"]["Ports"]["7070/tcp"][0]["HostPort"])
    _wait(lambda: requests.get(server.endpoint, timeout=2).status_code, 30)
    yield network.name, server
    container.remove(force=True)
    with contextlib.suppress(docker.errors.APIError):
        network.remove()
        volume.remove(force=True)


def test_raft_mode_failover_rejoin_and_destroy(throwaway_stack, alert_receiver, s3_beside, toolchain, tmp_path,
                                               new_page):
    import base64

    from infra.agents import backup_store as bs
    from infra.agents import snapshot_agent

    engine = _engine(toolchain)
    s = throwaway_stack(DEV_STACK_PROGRAM)
    s.stack.set_config("vault-envvars:vaultMode", auto.ConfigValue("raft"))
    # Backups to a real S3 server beside the stack (docs/backups.md).
    s3_network, s3 = s3_beside
    bucket, key = s3.create_bucket(), secrets.token_bytes(32)
    s.stack.set_all_config({f"vault-envvars:{k}": auto.ConfigValue(v, secret=k in (
        "backupAccessKeyId", "backupSecretAccessKey", "backupEncryptionKey")) for k, v in {
        "backupBucket": bucket, "backupEndpoint": "http://s3:7070", "backupNetwork": s3_network,
        "backupAccessKeyId": s3.access_key_id, "backupSecretAccessKey": s3.secret_access_key,
        "backupEncryptionKey": base64.b64encode(key).decode()}.items()})
    # The Alertmanager delivers to a receiver this test runs on the monitoring's network (started after
    # `up` makes the network; the Alertmanager retries until it answers).
    s.stack.set_config("vault-envvars:alertWebhookUrl", auto.ConfigValue(f"http://{RECEIVER_ALIAS}:8080/alerts"))
    out = {k: v.value for k, v in s.up().outputs.items()}
    receiver = alert_receiver(f"dev-stack-{s.name}-monitoring-net", s.name)
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
    raft = vault_client(nodes[0], root, ca_file).sys.read_raft_config()["data"]["config"]["servers"]
    assert len(raft) == 3 and all(p["voter"] for p in raft)
    assert sum(1 for p in raft if p["leader"]) == 1
    autopilot = vault_client(nodes[0], root, ca_file).read("sys/storage/raft/autopilot/configuration")["data"]
    assert autopilot["cleanup_dead_servers"] is True and autopilot["min_quorum"] == 3
    assert s.changes_of_second_up() == {}
    ok = stack_check(s)  # every node over TLS with the stack's CA, the service, the sign-in, Prometheus
    assert ok.returncode == 0 and ok.stdout.count("ok: Vault at") == 3, ok.stdout + ok.stderr
    assert "ok: Prometheus at" in ok.stdout and "ok: the Alertmanager at" in ok.stdout, ok.stdout

    # Prometheus scrapes every node over TLS with the stack's CA, without a token; the snapshot agent's
    # first run (at its start) pushed the time of its verified snapshot to the Pushgateway.
    _wait(lambda: _targets(out["prometheus_url"], "vault") == {f"vault-{i}": "up" for i in range(1, 4)}, 60)
    pushed = {}
    _wait(lambda: pushed.update(_query(out["prometheus_url"], 'vault_snapshot_last_success{job="vault-snapshots"}'))
          or pushed, 60)
    assert abs(float(pushed["value"][1]) - time.time()) < 600, pushed
    # ... and that time is its verified upload's: an encrypted snapshot and SQLite database in the bucket.
    store = bs.StoreSettings(bucket=bucket, prefix=f"vault-envvars/{s.name}/", endpoint=s3.endpoint,
                             access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key)
    s3c = bs.client(store)
    (snap,), (db,) = bs.list_backups(s3c, store, "snapshots"), bs.list_backups(s3c, store, "database")
    (tmp_path / "restored.snap").write_bytes(bs.fetch(s3c, store, key, snap))
    assert snapshot_agent.verify_snapshot(str(tmp_path / "restored.snap"))["index"] > 0
    assert bs.fetch(s3c, store, key, db).startswith(b"SQLite format 3")
    assert not s3c.get_object(Bucket=bucket, Key=db)["Body"].read().startswith(b"SQLite")
    _wait(lambda: _query(out["prometheus_url"], 'envvars_db_backup_last_success{job="vault-snapshots"}'), 60)
    # The restore check beside the stack restored that pair into its throwaway OpenBao and verified it.
    checked = {}
    _wait(lambda: checked.update(_query(out["prometheus_url"],
                                        'envvars_restore_check_last_run_success{job="vault-restore-check"}'))
          or checked, 180)
    rto = _query(out["prometheus_url"], 'envvars_restore_check_rto_seconds{job="vault-restore-check"}')
    print(f"restore check in the dev stack: success {checked['value'][1]}, RTO {rto.get('value', ['', '?'])[1]} s")
    assert checked["value"][1] == "1", engine.containers.get(f"dev-stack-{s.name}-restore-check-agent").logs()[-2000:]
    # Every `up` renewed the config-admin token and reported its expiry (one period, 768 h, from then).
    admin = {}
    _wait(lambda: admin.update(_query(out["prometheus_url"],
                                      'vault_token_expiry_timestamp_seconds{token="config-admin"}')) or admin, 60)
    assert 767 * 3600 < float(admin["value"][1]) - time.time() <= 768 * 3600, admin
    assert "ok: the config-admin token alive" in ok.stdout and "left (period 32d 0h" in ok.stdout, ok.stdout

    prefix = f"dev-stack-{s.name}"
    for i in range(1, 4):
        check_container(f"{prefix}-vault-vault-{i}", {8200, 8201},
                        {"/bao/config/tls.key": 0o400, "/bao/config/server.hcl": 0o400, "/bao/data": 0o750})
    # uid 0 without any capability: the owner of the service's data folder, whose database it backs up.
    check_container(f"{prefix}-vault-snapshots-agent", set(), {"/agent/secret_id": 0o400, "/data/snapshots": 0o750,
                                                               "/agent/backup.key": 0o400,
                                                               "/agent/s3-credentials.json": 0o400}, root=True)
    check_container(f"{prefix}-restore-check-agent", set(), {"/agent/unseal-keys.json": 0o400,
                                                             "/agent/backup.key": 0o400, "/agent/secret_id": 0o400})
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

    # The real Prometheus fires VaultNodeDown for the stopped node (its rule holds `up == 0` for 1m) and the
    # real Alertmanager delivers it to the receiver, naming the node.
    stopped_at = time.time()  # the receiver stamps each delivery with the same (the host's) clock
    stopped_at -= time.monotonic() - t0
    delivered = _wait_for_alert(receiver, "VaultNodeDown", leader_id, timeout=240)
    print(f"\nalert: VaultNodeDown for {leader_id} delivered to the webhook {delivered - stopped_at:.1f} s "
          "after its container was stopped")
    receiver.remove(force=True)

    # The old leader restarts sealed; the next `up` unseals it and it rejoins.
    leader.start()
    assert s.up().summary.resource_changes.get("update") == 1
    def rejoined():
        state = vault_client(survivors[0], root, ca_file).read("sys/storage/raft/autopilot/state")["data"]
        return state["healthy"] and len(state["servers"]) == 3 and all(
            v["healthy"] and v["status"] in ("leader", "voter") for v in state["servers"].values())
    _wait(rejoined, 60)

    # Every write, before and during the outage, is there, read through the rejoined node too.
    rejoined_node = next(n for n, c in zip(nodes, _node_containers(engine, s.name), strict=True)
                         if c.name == leader.name)
    for address in (survivors[0], rejoined_node):
        kv = vault_client(address, root, ca_file).secrets.kv.v2
        for prefix, n in (("before", 20), ("during", written_during + 1)):
            for i in range(n):
                got = kv.read_secret_version(path=f"users/failover/{prefix}-{i}", mount_point="secret",
                                             raise_on_deleted_version=True)
                assert got["data"]["data"]["value"] == f"{prefix[0]}{i}"

    s.destroy()
    assert _leftovers(engine, s.name) == {"containers": [], "networks": [], "volumes": []}


RECEIVER_ALIAS = "alert-receiver"
# A webhook receiver: one JSON line per POST, the body and the time it arrived.
RECEIVER = """
import http.server, json, sys, time
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        print(json.dumps({"received": time.time(), "body": json.loads(body)}), flush=True)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("", 8080), Receiver).serve_forever()
"""


def _start_receiver(engine, network: str, stack_name: str):
    """The webhook receiver, on the monitoring's network as alert-receiver: the base image's python3."""
    container = engine.containers.create(
        DEFAULT_BASE_IMAGE, ["python3", "-u", "-c", RECEIVER], name=f"alert-receiver-{stack_name}",
        user="65534:65534", read_only=True, cap_drop=["ALL"], network=network,
        networking_config={network: engine.api.create_endpoint_config(aliases=[RECEIVER_ALIAS])},
        labels={"vault-envvars.test": stack_name})
    container.start()
    return container


def _deliveries(receiver) -> list[dict]:
    return [json.loads(line) for line in receiver.logs(stdout=True, stderr=False).decode().splitlines()
            if line.startswith("{")]


def _wait_for_alert(receiver, alertname: str, instance: str, timeout: float) -> float:
    """When (unix time) the receiver got a firing `alertname` for `instance`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in _deliveries(receiver):
            for alert in d["body"].get("alerts", []):
                if alert["status"] == "firing" and alert["labels"].get("alertname") == alertname \
                        and alert["labels"].get("instance") == instance:
                    return d["received"]
        time.sleep(1)
    raise AssertionError(f"no firing {alertname} for {instance} delivered within {timeout} s; "
                         f"deliveries: {_deliveries(receiver)}")


def _targets(prometheus: str, job: str) -> dict[str, str]:
    """Prometheus' active targets of a job: {instance: health}."""
    r = requests.get(f"{prometheus}/api/v1/targets", params={"state": "active"}, timeout=5)
    return {t["labels"]["instance"]: t["health"] for t in r.json()["data"]["activeTargets"]
            if t["labels"]["job"] == job}


def _query(prometheus: str, expr: str) -> dict:
    """The single sample of an instant query ({} when it has none)."""
    result = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()["data"]["result"]
    return result[0] if result else {}


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
