"""Jobs are untrusted code: a job alice starts tries every route to the service's credentials, bob's values
and the database, against `python -m service` as people run it, and gets nothing. The same attack with the
sandbox switched off (ENVVARS_UNSAFE_UNSANDBOXED_JOBS) gets the secret id: the test can see a leak."""
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time

import docker
import pytest
import requests

from devkit.service_process import start_service, wait_execution
from infra.providers.tls import make_signing_key
from tests.service.helpers import bearer, process_env, wait_finished

pytestmark = pytest.mark.integration
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Runs inside the job. argv: a JSON object of targets. Prints one JSON report: route -> what it got.
ATTACK = r'''
import json, os, signal, socket, sqlite3, sys, urllib.request
t = json.loads(sys.argv[1])
got = {}
def attempt(name, fn):
    try:
        got[name] = "GOT " + str(fn())[:400]
    except Exception as e:
        got[name] = "denied " + type(e).__name__
def read(path, n=4096):
    with open(path, "rb") as f:
        return f.read(n)
got["visible pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
got["own pid"] = os.getpid()
attempt("environ of the service", lambda: read(f"/proc/{t['service_pid']}/environ"))
attempt("cmdline of the service", lambda: read(f"/proc/{t['service_pid']}/cmdline"))
def mem():
    with open(f"/proc/{t['service_pid']}/maps") as maps, open(f"/proc/{t['service_pid']}/mem", "rb") as m:
        start = int(maps.readline().split("-")[0], 16)
        m.seek(start)
        return m.read(64)
attempt("memory of the service", mem)
attempt("files of the service through its /proc root", lambda: os.listdir(f"/proc/{t['service_pid']}/root/"))
for key in ("secret_id_file", "session_key_file", "login_key_file", "database_file"):
    attempt(key, lambda: read(t[key]))
attempt("the service's code", lambda: os.listdir(t["code_dir"]))
def tamper():
    db = sqlite3.connect(t["database_file"], timeout=1)
    db.execute("UPDATE executions SET owner = 'bob'")
    db.commit()
    return "tampered"
if t["destructive"]:
    attempt("write the database", tamper)
    attempt("signal the service", lambda: os.kill(t["service_pid"], signal.SIGKILL))
    attempt("signal bob's job", lambda: os.kill(t["bob_job_pid"], signal.SIGKILL))
    # Every process this job may signal but itself: in the sandbox there is none.
    attempt("signal every process it may", lambda: os.kill(-1, signal.SIGKILL))
def approle():
    found = got["secret_id_file"].removeprefix("GOT b'").rstrip("'") if got["secret_id_file"].startswith("GOT") else ""
    body = json.dumps({"role_id": t["role_id"], "secret_id": found}).encode()
    r = urllib.request.urlopen(urllib.request.Request(t["vault"] + "/v1/auth/approle/login", body, method="POST"), timeout=5)
    return r.read()
attempt("AppRole login with what a job could find", approle)
def jwt_login(token):
    body = json.dumps({"role": "user", "jwt": token}).encode()
    request = urllib.request.Request(t["vault"] + "/v1/auth/jwt/login", body, method="POST")
    return urllib.request.urlopen(request, timeout=5).read()
# Tokens a job may hold: its user's own, and one the identity provider issued to a case variant of bob.
attempt("Vault login with the user's own token", lambda: jwt_login(t["own_token"]))
attempt("Vault login as a case variant of bob", lambda: jwt_login(t["case_variant_token"]))
attempt("list every user's values without a token",
        lambda: urllib.request.urlopen(t["vault"] + "/v1/secret/metadata/users?list=true", timeout=5).read())
print(json.dumps(got))
'''


def _run(base, headers, command, env_var_ids=(), timeout=60) -> dict:
    r = requests.post(f"{base}/api/v2/execution", json={"command": command, "env_var_ids": list(env_var_ids)},
                      headers=headers, timeout=10)
    assert r.status_code == 202, r.text
    return r.json()


def _job_pids(service_pid: int) -> list[int]:
    """The host pids of the running jobs: the service's children, or the job containers' main processes."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(service_pid)], capture_output=True, text=True).stdout
    pids = [int(p) for p in out.split()]
    if not pids and os.environ.get("DOCKER_HOST"):
        engine = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
        pids = [c.attrs["State"]["Pid"] for c in engine.containers.list(filters={"label": "vault-envvars.execution"})]
    return pids


def _attack(service_vault, issuer, tmp_path, destructive=True, **extra) -> tuple[dict, str, dict, list]:
    """Bob runs a job holding his value; alice's job attacks. Returns (alice's report, her job's whole
    output, bob's execution, the secrets the attack must not see: bob's value, the service's secret id
    and session key)."""
    server, outputs = service_vault
    env = process_env(server, outputs, issuer, tmp_path, **extra)
    proc, base = start_service(env, str(tmp_path), str(tmp_path / "service.log"))
    try:
        alice, bob = bearer(issuer, "attacker-alice"), bearer(issuer, "victim-bob")
        bob_value = f"BOB-{secrets.token_hex(12)}"
        bob_var = requests.post(f"{base}/api/v2/user/env-vars", json={"name": "BOB_SECRET", "value": bob_value},
                                headers=bob, timeout=10).json()
        bob_run = _run(base, bob, ["sh", "-c", "sleep 6; echo bob-finished"], [bob_var["id"]])
        deadline = time.monotonic() + 10
        while not _job_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        (bob_job_pid,) = _job_pids(proc.pid)
        targets = {"service_pid": proc.pid, "secret_id_file": env["ENVVARS_APPROLE_SECRET_ID_FILE"],
                   "session_key_file": env["ENVVARS_SESSION_KEY_FILE"], "database_file": f"{tmp_path}/envvars.db",
                   "code_dir": os.path.join(REPO_ROOT, "service"), "bob_job_pid": bob_job_pid,
                   "vault": server.address, "role_id": outputs["executor_role_id"], "destructive": destructive,
                   "login_key_file": env["ENVVARS_VAULT_LOGIN_KEY_FILE"],
                   "own_token": issuer.token("attacker-alice"), "case_variant_token": issuer.token("VICTIM-BOB")}
        attack = wait_execution(base, alice, _run(base, alice, ["python3", "-c", ATTACK, json.dumps(targets)])["id"])
        assert attack["status"] == "succeeded", (attack["exit_code"], attack["error"], attack["output"][-3000:])
        bob_done = wait_execution(base, bob, bob_run["id"])
        assert proc.poll() is None  # the service survived
        must_not_see = [bob_value, outputs["executor_secret_id"], open(env["ENVVARS_SESSION_KEY_FILE"]).read(),
                        outputs["service_login_key"].splitlines()[1]]
        return json.loads(attack["output"]), attack["output"], bob_done, must_not_see
    finally:
        proc.terminate()
        proc.wait(10)


BACKENDS = {"subprocess": {}, "docker": {"ENVVARS_EXECUTOR_BACKEND": "docker"}}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_job_reaches_nothing_of_the_service_or_other_jobs(service_vault, issuer, tmp_path, toolchain, backend):
    report, output, bob_done, must_not_see = _attack(service_vault, issuer, tmp_path, **BACKENDS[backend])
    # Its sandbox's (or container's) init and itself, nothing else.
    assert set(report.pop("visible pids")) <= {1, report.pop("own pid")}, report
    if backend == "subprocess":  # it shares the network: Vault itself answered, and refused both tokens
        for route in ("Vault login with the user's own token", "Vault login as a case variant of bob"):
            assert report[route] == "denied HTTPError", (route, report[route])
    leaked = {route: outcome for route, outcome in report.items() if not outcome.startswith("denied")}
    assert leaked == {}, json.dumps(report, indent=1)
    for secret in must_not_see:
        assert secret not in output
    assert bob_done["status"] == "succeeded" and "bob-finished" in bob_done["output"]
    with sqlite3.connect(tmp_path / "envvars.db") as db:
        assert db.execute("SELECT count(*) FROM executions WHERE owner = 'bob'").fetchone() == (0,)


def test_without_the_sandbox_the_same_attack_gets_the_credentials(service_vault, issuer, tmp_path):
    """The control: what the sandbox prevents is real. Unsandboxed (the explicit laptop setting), the job
    sees every process, reads the service's environment and secret id, and logs in as the executor."""
    report, output, _, must_not_see = _attack(service_vault, issuer, tmp_path, destructive=False,
                                              ENVVARS_UNSAFE_UNSANDBOXED_JOBS="true")
    assert len(report["visible pids"]) > 3 and report["environ of the service"].startswith("GOT")
    assert report["AppRole login with what a job could find"].startswith("GOT")
    assert report["login_key_file"].startswith("GOT")
    assert must_not_see[1] in output
    assert "UNSANDBOXED_JOBS" in open(tmp_path / "service.log").read()


PROBE = """
import os, resource, time
print('uid', os.getuid(), os.getgid(), os.getgroups())
print('nnp', open('/proc/self/status').read().split('NoNewPrivs:')[1].split()[0])
print('nproc', resource.getrlimit(resource.RLIMIT_NPROC)[0])
try:
    bytearray(512 << 20)
    print('allocated')
except MemoryError:
    print('memory limited')
children = []
try:
    for _ in range(64):
        pid = os.fork()
        if pid == 0:
            time.sleep(5)
            os._exit(0)
        children.append(pid)
except OSError:
    pass
print('forked', len(children))
"""


def test_the_job_runs_as_its_own_uid_with_no_new_privileges_and_limits(make_client, issuer):
    client = make_client(job_max_processes=16, job_memory_mb=256)
    alice = bearer(issuer, "sandboxed-alice")
    r = client.post("/api/v2/execution", json={"command": ["python3", "-c", PROBE], "timeout_seconds": 20},
                    headers=alice)
    out = wait_finished(client, alice, r.json()["id"], timeout=40)["output"]
    uid = int(out.split("uid ")[1].split()[0])
    assert 200_000 <= uid < 200_004 and f"uid {uid} {uid} []" in out, out  # a uid per worker slot
    assert "nnp 1" in out and "nproc 16" in out and "memory limited" in out, out
    assert int(out.split("forked ")[1].split()[0]) < 16, out


def test_no_network_setting_leaves_the_job_without_any(make_client, issuer, service_vault):
    server, _ = service_vault
    client = make_client(job_network="none")
    alice = bearer(issuer, "offline-alice")
    host, port = server.address.removeprefix("http://").split(":")
    probe = (f"import socket\ntry:\n    socket.create_connection(('{host}', {port}), 2); print('connected')\n"
             "except OSError as e:\n    print('no network', e.errno)")
    r = client.post("/api/v2/execution", json={"command": ["python3", "-c", probe]}, headers=alice)
    assert "no network" in wait_finished(client, alice, r.json()["id"])["output"]
    online = make_client()
    r = online.post("/api/v2/execution", json={"command": ["python3", "-c", probe]}, headers=alice)
    assert "connected" in wait_finished(online, alice, r.json()["id"])["output"]  # the default: on


def test_the_service_refuses_to_start_without_its_sandbox(service_vault, issuer):
    """`python -m service` run by a user that cannot switch to the jobs' uids (not root, no CAP_SETUID)
    exits at once, before touching its database, saying why and what to change."""
    server, _ = service_vault
    # A throwaway login key that user can read: the settings are read after the switch.
    key = tempfile.NamedTemporaryFile("w", suffix=".pem")
    key.write(make_signing_key()["key_pem"])
    key.flush()
    os.chmod(key.name, 0o444)
    env = {"ENVVARS_VAULT_ADDR": server.address, "ENVVARS_OIDC_ISSUER": issuer.iss,
           "ENVVARS_OIDC_JWKS_URL": issuer.jwks_url, "ENVVARS_VAULT_LOGIN_KEY_FILE": key.name}
    # Everything is imported first: the interpreter's own files may not be readable by that user.
    drop = ("import os, sys, uvicorn, service.__main__ as m, service.app; "
            "os.setgroups([]); os.setgid(65534); os.setuid(65534); sys.exit(m.main([]))")
    r = subprocess.run([sys.executable, "-c", drop], cwd=REPO_ROOT, env={**os.environ, **env},
                       capture_output=True, text=True, timeout=60)
    key.close()
    assert r.returncode == 2, r.stderr[-2000:]
    assert "cannot start jobs as uid 200000" in r.stderr and "CAP_SETUID" in r.stderr, r.stderr


def test_the_runner_refuses_env_vars_the_owner_does_not_own(make_client, issuer, tmp_path):
    """Defence in depth: whoever rewrites a queued execution's rows in the database (the sandbox keeps jobs
    away from it) still cannot have bob's value injected into alice's job."""
    db_file = tmp_path / "tamper.db"
    client = make_client(f"sqlite:///{db_file}", max_workers=1)
    alice, bob = bearer(issuer, "tamper-alice"), bearer(issuer, "tamper-bob")
    mine = client.post("/api/v2/user/env-vars", json={"name": "MINE", "value": "alice's"}, headers=alice).json()
    theirs = client.post("/api/v2/user/env-vars", json={"name": "THEIRS", "value": "bob's"}, headers=bob).json()
    blocker = client.post("/api/v2/execution", json={"command": ["sleep", "2"]}, headers=alice).json()
    queued = client.post("/api/v2/execution", json={"command": ["env"], "env_var_ids": [mine["id"]]},
                         headers=alice).json()
    with sqlite3.connect(db_file) as db:  # the single worker is busy: this one is still queued
        assert db.execute("SELECT status FROM executions WHERE id = ?", (queued["id"],)).fetchone() == ("queued",)
        db.execute("INSERT INTO execution_env_vars (execution_id, env_var_id, name) VALUES (?, ?, 'THEIRS')",
                   (queued["id"], theirs["id"]))
    done = wait_finished(client, alice, queued["id"])
    assert done["status"] == "failed" and theirs["id"] in done["error"] and "did not start" in done["error"]
    assert "bob's" not in done["output"]
    assert wait_finished(client, alice, blocker["id"])["status"] == "succeeded"
    with sqlite3.connect(db_file) as db:
        rows = db.execute("SELECT action, outcome, detail FROM audit_events WHERE target = ? ORDER BY id",
                          (queued["id"],)).fetchall()
        ran = db.execute("SELECT detail FROM audit_events WHERE target = ? AND action = 'execution.run'",
                         (blocker["id"],)).fetchall()
    assert ("execution.start", "refused", f"env_var_ids={theirs['id']}") in rows
    assert not any(action == "execution.run" for action, _, _ in rows)
    assert ran == [("env_vars=",)]  # the audit row names what the job actually received: nothing here
