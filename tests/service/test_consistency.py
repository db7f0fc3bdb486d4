"""A row and its Vault value stay together under races, a hung Vault and revoked tokens, and errors blame
what actually failed. Real servers only: an OpenBao dev server of this module's own that a test can hang
(SIGSTOP: the kernel still accepts connections, requests wait), the shared one, SQLite and PostgreSQL."""
import contextlib
import os
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import hvac
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from devkit.net import free_port
from service.app import create_app
from service.db import AuditEvent
from tests.service.helpers import app_clients, bearer, configured_vault, settings_for, wait_finished

pytestmark = pytest.mark.integration
API = "/api/v2/user/env-vars"


@pytest.fixture(scope="module")
def stoppable_vault(toolchain, pulumi_backend, issuer, tmp_path_factory):
    """A Vault of this module only, configured by the project, so a test can make it hang."""
    yield from configured_vault(toolchain, pulumi_backend, issuer, str(tmp_path_factory.mktemp("stoppable-bao")),
                                breakable=True)


@pytest.fixture
def hang_client(stoppable_vault, issuer, tmp_path):
    """hang_client(**settings) -> a TestClient on a fresh app (SQLite) using the stoppable Vault."""
    yield from app_clients(stoppable_vault, issuer, tmp_path)


@contextlib.contextmanager
def hung(server):
    """Vault stops answering until the block ends, as a hung server or a network stall would."""
    pid = server.processes[0].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _create(client, headers, name, value) -> dict:
    r = client.post(API, json={"name": name, "value": value}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def _values(server, user) -> list:
    """The ids that have a value in Vault for `user`, read with the root token."""
    root = hvac.Client(url=server.address, token=server.token)
    try:
        return sorted(root.secrets.kv.v2.list_secrets(path=f"users/{user}", mount_point="secret")["data"]["keys"])
    except hvac.exceptions.InvalidPath:
        return []


def _ok_audits(client, action: str, target: str) -> int:
    with client.app.state.components.sessions() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == action, AuditEvent.target == target, AuditEvent.outcome == "ok"))


@pytest.mark.parametrize("first", ["put", "delete"])
def test_a_put_racing_a_delete_leaves_no_value_without_its_row(hang_client, issuer, stoppable_vault, first):
    server, _ = stoppable_vault
    client = hang_client()
    user = f"race-{first}"
    alice = bearer(issuer, user)
    ev = _create(client, alice, "RACED", "first value")
    calls = {"put": lambda: client.put(f"{API}/{ev['id']}", json={"value": "second value"}, headers=alice),
             "delete": lambda: client.delete(f"{API}/{ev['id']}", headers=alice)}
    second = "delete" if first == "put" else "put"
    with ThreadPoolExecutor(2) as pool:
        with hung(server):  # the first one waits in Vault while the second one comes
            a = pool.submit(calls[first])
            time.sleep(0.5)
            b = pool.submit(calls[second])
            time.sleep(0.5)
        answers = {first: a.result(timeout=30), second: b.result(timeout=30)}
    codes = {k: r.status_code for k, r in answers.items()}
    exists = client.get(f"{API}/{ev['id']}", headers=alice).status_code == 200
    assert (ev["id"] in _values(server, user)) == exists, codes  # a value exactly when its row exists
    assert codes[second] == 409 and "in progress" in answers[second].json()["detail"], codes
    assert codes[first] == (200 if first == "put" else 204) and exists == (first == "put")
    if exists:
        assert client.delete(f"{API}/{ev['id']}", headers=alice).status_code == 204
    assert _values(server, user) == []


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_concurrent_deletes_exactly_one_succeeds(make_client, issuer, service_vault, postgres, database):
    server, _ = service_vault
    client = make_client(postgres.url if database == "postgresql" else "")
    user = f"deleters-{database}"
    alice = bearer(issuer, user)
    ev = _create(client, alice, "ONCE", "value")
    start = threading.Barrier(20)

    def delete(_):
        start.wait()
        return client.delete(f"{API}/{ev['id']}", headers=alice).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = sorted(pool.map(delete, range(20)))
    assert codes == [204] + [404] * 19
    assert _ok_audits(client, "env_var.delete", ev["id"]) == 1
    assert _values(server, user) == []


def test_a_hung_vault_does_not_block_other_users_writes(hang_client, issuer, stoppable_vault):
    server, _ = stoppable_vault
    client = hang_client(vault_timeout_seconds=8)  # alice's create outlasts what bob does meanwhile
    alice, bob = bearer(issuer, "hung-alice"), bearer(issuer, "hung-bob")
    _create(client, alice, "WARM", "x")  # alice's Vault login is cached: her next create waits on the write
    bobs = _create(client, bob, "BOBS", "y")
    with ThreadPoolExecutor(1) as pool:
        with hung(server):
            stuck = pool.submit(client.post, API, json={"name": "STUCK", "value": "z"}, headers=alice)
            time.sleep(0.5)
            started = time.monotonic()
            edited = client.put(f"{API}/{bobs['id']}", json={"description": "edited meanwhile"}, headers=bob)
            run = client.post("/api/v2/execution", json={"command": ["true"]}, headers=bob)
            took = time.monotonic() - started
            assert edited.status_code == 200, edited.text
            assert run.status_code == 202, run.text
            assert took < 3  # no busy wait on a database lock
            assert not stuck.done()  # bob's writes happened while alice's create was waiting on Vault
        answer = stuck.result(timeout=30)
    assert edited.json()["description"] == "edited meanwhile"
    names = sorted(e["name"] for e in client.get(API, headers=alice).json()["items"])
    assert names == (["STUCK", "WARM"] if answer.status_code == 201 else ["WARM"]), answer.text


def test_a_create_that_timed_out_is_undone_when_vault_resumes(hang_client, issuer, stoppable_vault):
    server, _ = stoppable_vault
    client = hang_client(vault_timeout_seconds=2)
    assert client.app.state.components.gateway.timeout == 2  # the setting reaches the Vault clients
    user = "late-alice"
    alice = bearer(issuer, user)
    kept = _create(client, alice, "KEPT", "kept")
    with hung(server):
        started = time.monotonic()
        r = client.post(API, json={"name": "LATE", "value": "late value"}, headers=alice)
        took = time.monotonic() - started
        time.sleep(1)
    assert r.status_code == 503 and "late value" not in r.text
    assert r.json()["detail"] == "Vault did not answer in time; the env var was not created"
    assert took < 6
    assert [e["name"] for e in client.get(API, headers=alice).json()["items"]] == ["KEPT"]
    # The write Vault had received lands now that it resumed; it is destroyed, and stays destroyed.
    time.sleep(1)
    deadline = time.monotonic() + 30
    while _values(server, user) != [kept["id"]]:
        assert time.monotonic() < deadline, f"the timed-out create's value stayed: {_values(server, user)}"
        time.sleep(0.2)
    time.sleep(4)  # longer than the undo's second look
    assert _values(server, user) == [kept["id"]]


def test_the_executor_logs_in_again_when_its_token_is_revoked(hang_client, issuer, stoppable_vault):
    server, _ = stoppable_vault
    client = hang_client()
    alice = bearer(issuer, "relogin-alice")
    ev = _create(client, alice, "READ_ME", "read me")

    def run() -> dict:
        r = client.post("/api/v2/execution", json={"command": ["true"], "env_var_ids": [ev["id"]]}, headers=alice)
        return wait_finished(client, alice, r.json()["id"])

    assert run()["status"] == "succeeded"  # the executor holds an AppRole token now
    # Every AppRole token goes, as when Vault loses its tokens (a restart of a dev server, a restore).
    hvac.Client(url=server.address, token=server.token).sys.revoke_prefix("auth/approle/login")
    done = run()
    assert done["status"] == "succeeded", done["error"]


def test_a_revoked_user_token_is_a_403_that_says_so(hang_client, issuer, stoppable_vault):
    server, _ = stoppable_vault
    client = hang_client()
    alice = bearer(issuer, "revoked-alice")
    _create(client, alice, "BEFORE", "1")
    hvac.Client(url=server.address, token=server.token).sys.revoke_prefix("auth/jwt/login")
    r = client.post(API, json={"name": "AFTER", "value": "2"}, headers=alice)
    assert r.status_code == 403, r.text
    assert r.json()["detail"] == ("Vault refused your token (revoked or expired); the env var was not created; "
                                  "sign in again")
    assert [e["name"] for e in client.get(API, headers=alice).json()["items"]] == ["BEFORE"]
    _create(client, alice, "AFTER", "2")  # the refused session was dropped: a fresh login works


def test_an_unreachable_vault_is_named_as_such(issuer, service_vault, tmp_path):
    _, outputs = service_vault
    nowhere = SimpleNamespace(address=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with TestClient(create_app(settings=settings_for(nowhere, outputs, issuer, f"sqlite:///{tmp_path}/u.db",
                                                     tmp_path))) as client:
        r = client.post(API, json={"name": "X", "value": "1"}, headers=bearer(issuer, "unreachable-alice"))
    assert r.status_code == 503
    assert r.json()["detail"] == "Vault is unreachable or sealed; nothing was changed"


def test_a_database_lock_wait_is_busy_not_unavailable(make_client, issuer, service_vault, tmp_path):
    server, _ = service_vault
    db_file = tmp_path / "busy.db"
    client = make_client(f"sqlite:///{db_file}")
    alice = bearer(issuer, "busy-alice")
    kept = _create(client, alice, "KEPT", "1")
    other = sqlite3.connect(db_file, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's write lock past the busy wait
    try:
        created = client.post(API, json={"name": "NEW", "value": "2"}, headers=alice)
        edited = client.put(f"{API}/{kept['id']}", json={"description": "new"}, headers=alice)
    finally:
        other.execute("ROLLBACK")
        other.close()
    busy = "the database is busy (a lock wait timed out); "
    for r, outcome in ((created, "the env var was not created"), (edited, "nothing was changed")):
        assert r.status_code == 503 and r.headers.get("retry-after") == "1", r.text
        assert r.json()["detail"] == f"{busy}{outcome}; retry"
    assert [e["name"] for e in client.get(API, headers=alice).json()["items"]] == ["KEPT"]
    assert _values(server, "busy-alice") == [kept["id"]]
