"""Dynamic env vars against a real OpenBao (configured by the project's own `pulumi up`, database engine
included) and a real PostgreSQL that requires passwords: a job connects with a credential minted for it
alone; at every exit the PostgreSQL role is gone and the copied password is refused; a user without the
grant is refused by Vault (403 naming the role); the credential appears nowhere it must not.

A job copies its login out as an attacker would, into a table of the database (`loot`, which any login may
insert into), so the test can try the copied password after the job; it also prints it, to check redaction."""
import datetime
import json
import os
import re
import signal
import subprocess
import time

import docker
import hvac
import pytest
import requests
from pulumi import automation as auto

from devkit import procs
from devkit.postgres import remove, require_passwords, start_postgres
from devkit.service_process import start_service, wait_execution
from devkit.vault_servers import start_dev_server
from tests.service.helpers import app_clients, bearer, configure, process_env, vault_login_token, wait_finished

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "vault-admin-pw-" + os.urandom(6).hex()
ROLE_SQL = ['CREATE ROLE "{{name}}" WITH LOGIN PASSWORD \'{{password}}\' VALID UNTIL \'{{expiration}}\';',
            'GRANT CONNECT ON DATABASE postgres TO "{{name}}";']
REVOKE_SQL = ['DROP ROLE IF EXISTS "{{name}}";']


@pytest.fixture(scope="module")
def jobs_db():
    """A PostgreSQL whose logins (but the test bed's `postgres`) need their password, and the login Vault
    manages roles with."""
    server = start_postgres()
    require_passwords(server)
    _sql(server, f"CREATE ROLE vaultadmin WITH LOGIN CREATEROLE PASSWORD '{ADMIN_PASSWORD}'")
    _sql(server, "CREATE TABLE loot (n serial, tag text, login text, password text, at timestamptz DEFAULT clock_timestamp()); "
                 "GRANT INSERT ON loot TO PUBLIC; GRANT USAGE ON SEQUENCE loot_n_seq TO PUBLIC")
    yield server
    remove(server)


def _sql(server, query: str) -> str:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-d", "postgres",
                           "-Atc", query], check=True, capture_output=True, text=True).stdout.strip()


def _login(server, user: str, password: str) -> subprocess.CompletedProcess:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(server.port), "-U", user, "-d", "postgres",
                           "-Atc", "select current_user"], capture_output=True, text=True,
                          env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"})


def _role_exists(server, user: str) -> bool:
    return _sql(server, f"SELECT count(*) FROM pg_roles WHERE rolname = '{user}'") != "0"  # noqa: S608 (test's own)


@pytest.fixture(scope="module")
def dynamic_vault(toolchain, pulumi_backend, issuer, jobs_db, tmp_path_factory):
    """A dev server configured by the project's program with a database connection and two roles:
    `reader` granted to alice, `nobody` granted to no one."""
    server = start_dev_server(toolchain["bao"], str(tmp_path_factory.mktemp("dyn-bao")))
    connections = [{"name": "jobsdb", "username": "vaultadmin",
                    "connectionUrl": f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{jobs_db.port}/postgres"
                                     "?sslmode=disable"}]
    roles = [{"name": "reader", "connection": "jobsdb", "creationStatements": ROLE_SQL,
              "revocationStatements": REVOKE_SQL, "defaultTtl": "10m", "maxTtl": "1h", "users": ["alice"]},
             {"name": "nobody", "connection": "jobsdb", "creationStatements": ROLE_SQL,
              "revocationStatements": REVOKE_SQL, "users": []}]
    s, outputs = configure(pulumi_backend, server, issuer, {
        "vault-envvars:databaseConnections": auto.ConfigValue(json.dumps(connections)),
        "vault-envvars:databaseRoles": auto.ConfigValue(json.dumps(roles)),
        "vault-envvars:databasePasswords": auto.ConfigValue(json.dumps({"jobsdb": ADMIN_PASSWORD}), secret=True),
    })
    assert not s.stored_text_contains(ADMIN_PASSWORD)  # a secret in the config and the state
    yield server, outputs
    s.destroy()
    server.stop()


@pytest.fixture
def dyn_client(dynamic_vault, issuer, tmp_path):
    clients = app_clients(dynamic_vault, issuer, tmp_path)
    yield next(clients)(lease_reap_seconds=1, rate_limit="100000/minute", max_timeout_seconds=10000)
    next(clients, None)  # closes it


def _declare(client, headers, port: int, name: str = "JOBSDB", role: str = "reader"):
    return client.post("/api/v2/user/dynamic-env-vars", headers=headers, json={
        "name": name, "role": role,
        "env": {"PGUSER": "{{username}}", "PGPASSWORD": "{{password}}",
                "DATABASE_URL": f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{port}/postgres"}})


# Connects with the minted login (PGUSER, PGPASSWORD), copies it into `loot` under `tag`, prints the plain
# forms (which must come out redacted), then does what `tail` says.
def _job(port: int, tag: str, tail: str = "true") -> list[str]:
    return ["sh", "-c",
            f'psql -h 127.0.0.1 -p {port} -d postgres -Atc "select current_user, count(*) from pg_roles" && '  # noqa: S608
            f'psql -h 127.0.0.1 -p {port} -d postgres -qc "insert into loot (tag, login, password) '
            f'values (\'{tag}\', current_user, \'$PGPASSWORD\')" && '
            'echo "plain $PGUSER $PGPASSWORD $DATABASE_URL" && printf %s "$PGPASSWORD" | base64 && ' + tail]


def _loot(server, tag: str, nth: int = 1, timeout: float = 30) -> tuple[str, str]:
    """The `nth` login jobs copied out under `tag`, once they have."""
    deadline = time.monotonic() + timeout
    while len(rows := _sql(server, f"SELECT login, password FROM loot WHERE tag = '{tag}' ORDER BY n")  # noqa: S608
               .splitlines()) < nth:
        assert time.monotonic() < deadline, f"the job {tag} never copied its login"
        time.sleep(0.1)
    user, password = rows[nth - 1].split("|")
    return user, password


def test_job_connects_and_its_login_ends_with_it(dyn_client, jobs_db, issuer, dynamic_vault, tmp_path):
    alice = bearer(issuer, "alice")
    declared = _declare(dyn_client, alice, jobs_db.port)
    assert declared.status_code == 201, declared.text
    dyn_id = declared.json()["id"]
    r = dyn_client.post("/api/v2/execution", headers=alice, json={
        "command": _job(jobs_db.port, "ok1"), "dynamic_env_var_ids": [dyn_id], "timeout_seconds": 60})
    assert r.status_code == 202, r.text
    body = wait_finished(dyn_client, alice, r.json()["id"])
    assert body["status"] == "succeeded", body
    user, password = _loot(jobs_db, "ok1")
    assert user.startswith("v-") and len(password) >= 16
    assert "[redacted:PGUSER]|" in body["output"]  # psql connected as the minted login
    for value in (user, password):  # every plain and encoded form is redacted
        assert value not in body["output"]
    assert "[redacted:PGPASSWORD]" in body["output"] and "[redacted:DATABASE_URL]" in body["output"]
    [cred] = body["credentials"]
    assert cred["role"] == "reader" and cred["lease_id"].startswith("database/creds/reader/")
    assert cred["token_accessor"] and cred["issued_at"] and cred["revoked_at"], cred
    assert cred["env_names"] == ["DATABASE_URL", "PGPASSWORD", "PGUSER"]
    assert 0 < cred["ttl_seconds"] <= 60 + 30
    # After the job: the role is gone and the copied password is refused. How long after the job's last
    # statement (its copy into loot, just before it exits) the lease was revoked:
    copied_at = float(_sql(jobs_db, "SELECT extract(epoch from at) FROM loot WHERE tag = 'ok1' ORDER BY n LIMIT 1"))
    revoked_at = datetime.datetime.fromisoformat(cred["revoked_at"].replace("Z", "+00:00")).timestamp()
    print(f"\nlease revoked {revoked_at - copied_at:.3f} s after the job's last statement")
    assert 0 < revoked_at - copied_at < 10
    assert not _role_exists(jobs_db, user)
    login = _login(jobs_db, user, password)
    assert login.returncode != 0 and "password authentication failed" in login.stderr, login.stderr
    # Activity: issued and revoked for this job.
    acts = dyn_client.get("/api/v2/user/activity", headers=alice).json()["items"]
    mine = {(a["action"], a["outcome"]) for a in acts if a.get("execution_id") == body["id"]}
    assert {("execution.credential_issued", "ok"), ("execution.credential_revoked", "ok")} <= mine
    # A rerun mints a fresh login from the same role.
    again = dyn_client.post(f"/api/v2/execution/{body['id']}/rerun", headers=alice, json={})
    assert again.status_code == 202, again.text
    body2 = wait_finished(dyn_client, alice, again.json()["id"])
    assert body2["status"] == "succeeded", body2
    user2, _ = _loot(jobs_db, "ok1", nth=2)
    assert user2 != user and not _role_exists(jobs_db, user2)
    assert body2["credentials"][0]["lease_id"] != cred["lease_id"]
    # Canaries: neither login is in the metrics, nor the database.
    metrics = dyn_client.get("/metrics").text
    assert "envvars_dynamic_leases_outstanding 0.0" in metrics
    assert "envvars_dynamic_credentials_issued_total 2.0" in metrics
    for value in (user, password, user2):
        assert value not in metrics
    for db_file in tmp_path.glob("*.db*"):
        data = db_file.read_bytes()
        assert user.encode() not in data and password.encode() not in data


def test_every_exit_revokes(dyn_client, jobs_db, issuer):
    """Failure, kill -9 of the job, timeout, cancel: each login is gone when its execution has ended."""
    alice = bearer(issuer, "alice")
    dyn_id = _declare(dyn_client, alice, jobs_db.port, name="EXITS").json()["id"]
    jobs = {"failed": ("exit 3", 60), "killed": ("kill -9 $$", 60), "timed_out": ("sleep 30", 4),
            "cancelled": ("sleep 30", 60)}
    ids = {}
    for what, (tail, timeout) in jobs.items():
        r = dyn_client.post("/api/v2/execution", headers=alice, json={
            "command": _job(jobs_db.port, what, tail), "dynamic_env_var_ids": [dyn_id], "timeout_seconds": timeout})
        assert r.status_code == 202, r.text
        ids[what] = r.json()["id"]
    _loot(jobs_db, "cancelled")  # it runs, with its login
    dyn_client.post(f"/api/v2/execution/{ids['cancelled']}/cancel", headers=alice)
    expected = {"failed": "failed", "killed": "failed", "timed_out": "timed_out", "cancelled": "cancelled"}
    for what, execution_id in ids.items():
        body = wait_finished(dyn_client, alice, execution_id, timeout=60)
        assert body["status"] == expected[what], (what, body)
        user, password = _loot(jobs_db, what)
        [cred] = body["credentials"]
        assert cred["revoked_at"], (what, cred)
        assert not _role_exists(jobs_db, user), what
        assert _login(jobs_db, user, password).returncode != 0, what


def test_grant_is_vaults_decision(dyn_client, jobs_db, issuer, dynamic_vault):
    alice, bob = bearer(issuer, "alice"), bearer(issuer, "bob")
    refused = _declare(dyn_client, bob, jobs_db.port)
    assert refused.status_code == 403 and "reader" in refused.json()["detail"], refused.text
    nobody = _declare(dyn_client, alice, jobs_db.port, name="NOBODY", role="nobody")
    assert nobody.status_code == 403 and "nobody" in nobody.json()["detail"], nobody.text
    # Vault itself refuses bob: his own Vault token (from a login token as the service signs it) cannot read
    # the creds path.
    server, outputs = dynamic_vault
    login = requests.post(f"{server.address}/v1/auth/jwt/login",
                          json={"role": "user", "jwt": vault_login_token(outputs, "bob")}, timeout=10).json()["auth"]
    r = requests.get(f"{server.address}/v1/database/creds/reader",
                     headers={"X-Vault-Token": login["client_token"]}, timeout=10)
    assert r.status_code == 403
    # The executor's own capability revokes this engine's leases by id, and nothing else: not through the body,
    # not by prefix, not another engine's; and it cannot mint.
    executor = hvac.Client(url=server.address)
    executor.auth.approle.login(role_id=outputs["executor_role_id"], secret_id=outputs["executor_secret_id"])
    xh = {"X-Vault-Token": executor.token}
    for method, path, body in (("PUT", "sys/leases/revoke", {"lease_id": "database/creds/reader/x"}),
                               ("PUT", "sys/leases/revoke-prefix/database", {}),
                               ("PUT", "sys/leases/revoke/secret/x", {}),
                               ("GET", "database/creds/reader", None)):
        r = requests.request(method, f"{server.address}/v1/{path}", headers=xh, json=body, timeout=10)
        assert r.status_code == 403, (path, r.status_code)
    assert requests.put(f"{server.address}/v1/sys/leases/revoke/database/creds/reader/unknown", headers=xh,
                        timeout=10).status_code in (204, 400)  # allowed: an unknown lease id
    # Another user's job never receives alice's dynamic env var: unknown to bob.
    dyn_id = _declare(dyn_client, alice, jobs_db.port, name="ALICEDB").json()["id"]
    r = dyn_client.post("/api/v2/execution", headers=bob, json={"command": ["env"], "dynamic_env_var_ids": [dyn_id]})
    assert r.status_code == 404, r.text
    assert dyn_client.get(f"/api/v2/user/dynamic-env-vars/{dyn_id}", headers=bob).status_code == 404
    # The dashboard's page exists and, without a session, sends the browser to the login.
    page = dyn_client.get("/dashboard/dynamic-env-vars", follow_redirects=False)
    assert page.status_code in (302, 303, 307) and "/dashboard/login" in page.headers["location"], page.status_code


def test_mint_failure_fails_closed(dyn_client, jobs_db, issuer, dynamic_vault):
    """The role removed from Vault after the job was asked for: the job fails before it starts, naming
    the env var."""
    alice = bearer(issuer, "alice")
    dyn_id = _declare(dyn_client, alice, jobs_db.port, name="GONE").json()["id"]
    server, _ = dynamic_vault
    # A role alice is granted but whose database login cannot be made (the connection refuses it).
    hdr = {"X-Vault-Token": server.token}
    role = requests.get(f"{server.address}/v1/database/roles/reader", headers=hdr, timeout=10).json()["data"]
    broken = {**role, "creation_statements": ["SELECT no_such_function();"]}
    requests.post(f"{server.address}/v1/database/roles/reader", headers=hdr, json=broken, timeout=10).raise_for_status()
    try:
        r = dyn_client.post("/api/v2/execution", headers=alice, json={
            "command": ["sh", "-c", "echo started"], "dynamic_env_var_ids": [dyn_id]})
        body = wait_finished(dyn_client, alice, r.json()["id"])
    finally:
        requests.post(f"{server.address}/v1/database/roles/reader", headers=hdr, json=role, timeout=10)
    assert body["status"] == "failed" and body["started_at"] is None, body
    assert "GONE" in body["error"] and "did not start" in body["error"] and "started" not in body["output"]
    # A timeout longer than the job token role allows (2 h): refused before the job starts, not cut short.
    r = dyn_client.post("/api/v2/execution", headers=alice, json={
        "command": ["sh", "-c", "echo started"], "dynamic_env_var_ids": [dyn_id], "timeout_seconds": 9000})
    body = wait_finished(dyn_client, alice, r.json()["id"])
    assert body["status"] == "failed" and "caps the job's token at 7200 s" in body["error"], body
    assert int(_sql(jobs_db, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%'")) == 0


def test_reaper_after_sigkill_of_the_service(dynamic_vault, issuer, jobs_db, tmp_path):
    """The service killed mid-job: a new one revokes the lease within the bound (the dead replica's claim,
    ENVVARS_EXECUTION_LEASE_SECONDS, plus one reaper period, plus the request)."""
    server, outputs = dynamic_vault
    env = process_env(server, outputs, issuer, tmp_path, ENVVARS_EXECUTION_LEASE_SECONDS="3",
                      ENVVARS_LEASE_REAP_SECONDS="1")
    log_path = str(tmp_path / "service.log")
    proc, url = start_service(env, REPO_ROOT, log_path)
    alice = bearer(issuer, "alice")
    r = requests.post(f"{url}/api/v2/user/dynamic-env-vars", headers=alice, timeout=10, json={
        "name": "REAPED", "role": "reader", "env": {"PGUSER": "{{username}}", "PGPASSWORD": "{{password}}"}})
    assert r.status_code == 201, r.text
    r = requests.post(f"{url}/api/v2/execution", headers=alice, timeout=10, json={
        "command": _job(jobs_db.port, "reaped", "sleep 120"), "dynamic_env_var_ids": [r.json()["id"]],
        "timeout_seconds": 300})
    execution_id = r.json()["id"]
    user, password = _loot(jobs_db, "reaped")
    assert _role_exists(jobs_db, user)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    assert _role_exists(jobs_db, user)  # nothing revoked it: the service is gone
    proc2, url = start_service(env, REPO_ROOT, str(tmp_path / "service2.log"))
    try:
        while _role_exists(jobs_db, user):
            assert time.monotonic() - killed < 30, "the reaper did not revoke the lease within 30 s"
            time.sleep(0.2)
        revoked_after = time.monotonic() - killed
        print(f"\nlease revoked {revoked_after:.1f} s after SIGKILL of the service (lease 3 s, reaper 1 s)")
        assert _login(jobs_db, user, password).returncode != 0
        body = wait_execution(url, alice, execution_id)
        assert body["status"] == "failed" and body["credentials"][0]["revoked_at"], body
        for log in (log_path, str(tmp_path / "service2.log")):
            text = open(log, errors="replace").read()
            assert user not in text and password not in text
    finally:
        procs.stop(proc2)


def test_docker_backend_gets_and_loses_its_login(dynamic_vault, issuer, jobs_db, toolchain, tmp_path):
    """The docker backend: the job container gets the minted login in its environment; the login exists
    while the job runs and is gone, its password refused, when the job ends: normally, after kill -9, and
    when its container is removed from under it."""
    clients = app_clients(dynamic_vault, issuer, tmp_path)
    client = next(clients)(executor_backend="docker", docker_host=toolchain["docker_host"], rate_limit="100000/minute")
    try:
        alice = bearer(issuer, "alice")
        dyn_id = _declare(client, alice, jobs_db.port, name="DOCKERDB").json()["id"]
        # No psql in the job image: the job prints the login (reversed) and lingers while the test checks
        # that it exists in PostgreSQL; then it ends normally, or kills itself.
        show = ('import os, sys, time; print("USER=" + os.environ["PGUSER"][::-1]); '
                'print("PASS=" + os.environ["PGPASSWORD"][::-1]); print(os.environ["PGPASSWORD"]); sys.stdout.flush(); '
                'time.sleep(4); os.kill(os.getpid(), 9) if sys.argv[1] == "kill" else None')
        for how in ("end", "kill"):
            r = client.post("/api/v2/execution", headers=alice, json={
                "command": ["python3", "-c", show, how], "dynamic_env_var_ids": [dyn_id], "timeout_seconds": 60})
            assert r.status_code == 202, r.text
            execution_id = r.json()["id"]
            deadline = time.monotonic() + 60
            while int(_sql(jobs_db, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%reader-%'")) < 1:
                body = client.get(f"/api/v2/execution/{execution_id}", headers=alice).json()
                assert time.monotonic() < deadline and body["status"] in ("queued", "running"), body
                time.sleep(0.1)
            body = wait_finished(client, alice, execution_id, timeout=60)
            assert body["status"] == ("succeeded" if how == "end" else "failed"), body
            user = re.search(r"USER=(\S+)", body["output"]).group(1)[::-1]
            password = re.search(r"PASS=(\S+)", body["output"]).group(1)[::-1]
            assert password not in body["output"] and "[redacted:PGPASSWORD]" in body["output"]
            assert body["credentials"][0]["revoked_at"]
            assert not _role_exists(jobs_db, user)
            assert _login(jobs_db, user, password).returncode != 0
        # The job's container removed from under it: the login ends with the job all the same.
        engine = docker.DockerClient(base_url=toolchain["docker_host"])
        r = client.post("/api/v2/execution", headers=alice, json={
            "command": ["python3", "-c", "import time; time.sleep(60)"], "dynamic_env_var_ids": [dyn_id],
            "timeout_seconds": 120})
        execution_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while not engine.containers.list(filters={"name": f"envvars-job-{execution_id}"}):
            assert time.monotonic() < deadline, "the job's container never ran"
            time.sleep(0.2)
        login = _sql(jobs_db, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-%reader-%'")
        assert login
        engine.containers.get(f"envvars-job-{execution_id}").remove(force=True)
        body = wait_finished(client, alice, execution_id, timeout=60)
        assert body["status"] == "failed" and body["credentials"][0]["revoked_at"], body
        assert not _role_exists(jobs_db, login)
    finally:
        next(clients, None)
