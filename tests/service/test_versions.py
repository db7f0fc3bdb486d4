"""Versions and rollback of an env var's value (service/core/versions.py), and the stored vault_path with
its migration (0006), against a real OpenBao configured by the project, with SQLite and PostgreSQL."""
import hashlib
import json
import secrets

import pytest
from sqlalchemy import create_engine, select, text

from service.db import AuditEvent, EnvVar
from tests.service.helpers import API, PRINT_ENV, bearer, create_env_var, root_client, stored_value, wait_finished

pytestmark = pytest.mark.integration


def _versions(client, headers, env_var_id) -> dict:
    r = client.get(f"{API}/{env_var_id}/versions", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _hash_in_a_job(client, headers, name, env_var_id) -> str:
    run = client.post("/api/v2/execution", json={"command": ["python3", "-c", PRINT_ENV, name],
                                                 "env_var_ids": [env_var_id]}, headers=headers)
    done = wait_finished(client, headers, run.json()["id"])
    assert done["status"] == "succeeded", done
    return done["output"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_versions_say_who_wrote_each_and_a_rollback_makes_an_old_value_current(
        make_client, issuer, service_vault, postgres, caplog, tmp_path, database):
    caplog.set_level("DEBUG")
    db_file = tmp_path / "versions.db"
    client = make_client(postgres.url if database == "postgresql" else f"sqlite:///{db_file}")
    user = f"ver-alice-{database}-{secrets.token_hex(3)}"
    alice = bearer(issuer, user)
    canaries = [f"CANARY-{i}-{secrets.token_hex(12)}" for i in range(3)]
    ev = create_env_var(client, alice, "ROLLED", canaries[0])
    responses = []
    for body in ({"value": canaries[1]}, {"description": "no new version"}, {"value": canaries[2]}):
        r = client.put(f"{API}/{ev['id']}", json=body, headers=alice)
        assert r.status_code == 200, r.text
        responses.append(r.text)

    listed = _versions(client, alice, ev["id"])
    assert (listed["env_var_id"], listed["current_version"], listed["oldest_version"]) == (ev["id"], 3, 1)
    items = listed["items"]
    assert [v["version"] for v in items] == [3, 2, 1]  # newest first; the description change made none
    assert [(v["current"], v["restorable"], v["deleted"], v["destroyed"]) for v in items] == \
        [(True, False, False, False), (False, True, False, False), (False, True, False, False)]
    assert [(v["author"], v["user"], v["action"]) for v in items] == \
        [("user", user, "update"), ("user", user, "update"), ("user", user, "create")]
    assert all(set(v) == {"version", "created_at", "current", "deleted", "destroyed", "author", "user", "action",
                          "rolled_back_from", "restorable"} for v in items)  # no value field at all
    assert items[0]["created_at"] >= items[2]["created_at"]

    r = client.post(f"{API}/{ev['id']}/rollback", json={"version": 1}, headers=alice)
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["rolled_back_from"], r.json()["env_var"]["name"]) == (4, 1, "ROLLED")
    assert r.json()["env_var"]["updated_at"] > ev["updated_at"]
    responses.append(r.text)
    # The old value is current: in Vault (read with the admin token) and in what a job receives.
    assert stored_value(service_vault, user, ev["id"]) == canaries[0]
    output = _hash_in_a_job(client, alice, "ROLLED", ev["id"])
    assert f"ROLLED {hashlib.sha256(canaries[0].encode()).hexdigest()}" in output
    after = _versions(client, alice, ev["id"])
    assert (after["items"][0]["version"], after["items"][0]["action"], after["items"][0]["rolled_back_from"],
            after["items"][0]["current"]) == (4, "rollback", 1, True)
    assert after["items"][1]["restorable"] is True  # the value replaced can be brought back in turn

    sessions = client.app.state.components.sessions
    with sessions() as s:
        assert s.scalar(select(EnvVar.vault_path).where(EnvVar.id == ev["id"])) == f"users/{user}/{ev['id']}"
        audited = s.execute(select(AuditEvent.actor, AuditEvent.action, AuditEvent.outcome, AuditEvent.detail)
                            .where(AuditEvent.target == ev["id"]).order_by(AuditEvent.id)).all()
    assert (user, "env_var.rollback", "ok", "version=4 from=1") in [tuple(a) for a in audited]

    # No value anywhere but Vault: responses, the service's log, the database.
    seen = [*responses, json.dumps(listed), json.dumps(after), output, caplog.text, client.get("/metrics").text]
    client.close()
    stored = (postgres.dump() if database == "postgresql"
              else b"".join(f.read_bytes() for f in tmp_path.glob("versions.db*")))
    for canary in canaries:
        assert not any(canary in blob for blob in seen)
        assert canary.encode() not in stored


def test_another_users_env_var_is_404_on_versions_and_rollback(client, issuer):
    alice, bob = bearer(issuer, "ver-iso-alice"), bearer(issuer, "ver-iso-bob")
    mine = create_env_var(client, alice, "ALICE_ONLY", "first")
    client.put(f"{API}/{mine['id']}", json={"value": "second"}, headers=alice)
    unknown = "00000000-0000-0000-0000-000000000000"
    for method, suffix, body in (("get", "versions", None), ("post", "rollback", {"version": 1})):
        kwargs = {"json": body} if body else {}
        foreign = getattr(client, method)(f"{API}/{mine['id']}/{suffix}", headers=bob, **kwargs)
        missing = getattr(client, method)(f"{API}/{unknown}/{suffix}", headers=bob, **kwargs)
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json() == missing.json()  # nothing tells that the id exists
    assert _versions(client, alice, mine["id"])["current_version"] == 2  # bob's rollback changed nothing


@pytest.mark.parametrize("body,says", [
    ({"version": 0}, "greater than or equal to 1"),
    ({"version": -3}, "greater than or equal to 1"),
    ({"version": "1"}, "integer"),  # strict: a JSON number only
    ({"version": 1.5}, "integer"),
    ({"version": True}, "integer"),
    ({"version": 2**40}, "less than or equal"),
    ({}, "required"),
    ({"version": 9}, "version 9 does not exist: the newest is 2"),
    ({"version": 2}, "version 2 is already the current value"),
])
def test_a_bad_version_is_422_naming_the_field(client, issuer, body, says):
    alice = bearer(issuer, "ver-bad")
    ev = create_env_var(client, alice, f"BAD_{secrets.token_hex(4)}", "one")
    client.put(f"{API}/{ev['id']}", json={"value": "two"}, headers=alice)
    r = client.post(f"{API}/{ev['id']}/rollback", json=body, headers=alice)
    assert r.status_code == 422, r.text
    problem = r.json()["detail"][0]
    assert problem["loc"] == ["body", "version"] and says in problem["msg"], r.text
    assert _versions(client, alice, ev["id"])["current_version"] == 2
    extra = client.post(f"{API}/{ev['id']}/rollback", json={"version": 1, "value": "x"}, headers=alice)
    assert extra.status_code == 422 and ["body", "value"] in [e["loc"] for e in extra.json()["detail"]]


def test_rollback_to_a_pruned_destroyed_or_deleted_version_is_refused(client, issuer, service_vault):
    root = root_client(service_vault)
    kept = root.secrets.kv.v2.read_configuration(mount_point="secret")["data"]["max_versions"]  # kvMaxVersions
    user = "ver-pruned"
    alice = bearer(issuer, user)
    ev = create_env_var(client, alice, "PRUNED", "v1")
    for n in range(2, kept + 3):
        assert client.put(f"{API}/{ev['id']}", json={"value": f"v{n}"}, headers=alice).status_code == 200
    newest, oldest = kept + 2, 3
    path = f"users/{user}/{ev['id']}"
    root.secrets.kv.v2.destroy_secret_versions(path=path, versions=[5], mount_point="secret")
    root.secrets.kv.v2.delete_secret_versions(path=path, versions=[6], mount_point="secret")

    listed = _versions(client, alice, ev["id"])
    assert (listed["current_version"], listed["oldest_version"], len(listed["items"])) == (newest, oldest, kept)
    by_version = {v["version"]: v for v in listed["items"]}
    assert (by_version[5]["destroyed"], by_version[5]["restorable"]) == (True, False)
    assert (by_version[6]["deleted"], by_version[6]["restorable"]) == (True, False)
    for version, says in ((1, f"version 1 is no longer kept: Vault keeps the newest versions only (kvMaxVersions); "
                              f"the oldest kept is {oldest}"),
                          (5, "version 5 was destroyed: its value is gone"),
                          (6, "version 6 was deleted in Vault: its value cannot be read")):
        r = client.post(f"{API}/{ev['id']}/rollback", json={"version": version}, headers=alice)
        assert r.status_code == 422 and r.json()["detail"][0] == {"loc": ["body", "version"], "msg": says,
                                                                  "type": "value_error"}, r.text
    assert stored_value(service_vault, user, ev["id"]) == f"v{newest}"  # nothing was written
    r = client.post(f"{API}/{ev['id']}/rollback", json={"version": oldest}, headers=alice)  # a kept one still can
    assert r.status_code == 200 and r.json()["version"] == newest + 1
    assert stored_value(service_vault, user, ev["id"]) == f"v{oldest}"
    with client.app.state.components.sessions() as s:
        refused = s.scalars(select(AuditEvent.detail).where(AuditEvent.target == ev["id"],
                                                            AuditEvent.outcome == "refused")).all()
    assert sorted(refused) == ["to=1", "to=5", "to=6"]


def test_the_openapi_schema_documents_versions_and_rollback(client):
    spec = client.get("/openapi.json").json()
    versions = spec["paths"]["/api/v2/user/env-vars/{env_var_id}/versions"]["get"]
    rollback = spec["paths"]["/api/v2/user/env-vars/{env_var_id}/rollback"]["post"]
    assert versions["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/EnvVarVersions")
    assert rollback["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/EnvVarRollback")
    fields = set(spec["components"]["schemas"]["EnvVarVersion"]["properties"])
    assert "value" not in fields and {"version", "created_at", "author", "destroyed"} <= fields


# --- migration 0006: env_vars.vault_path -------------------------------------------------------------

@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_vault_path_migration_fills_existing_rows(postgres, tmp_path, database):
    from alembic import command
    from alembic.config import Config

    import service.db

    url = (postgres.create_database(f"mig0006_{secrets.token_hex(4)}") if database == "postgresql"
           else f"sqlite:///{tmp_path}/old.db")
    cfg = Config()
    cfg.set_main_option("script_location", service.db.MIGRATIONS)
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0005")  # the schema before vault_path, with rows in it
    engine = create_engine(url)
    rows = [("11111111-1111-1111-1111-111111111111", "alice", "A"), ("22222222-2222-2222-2222-222222222222",
                                                                     "bob@example.org", "B")]
    with engine.begin() as c:
        for i, owner, name in rows:
            c.execute(text("insert into env_vars (id, owner, name, description, created_at, updated_at) "
                           "values (:i, :o, :n, '', '2026-12-01 10:00:00', '2026-12-01 10:00:00')"),
                      {"i": i, "o": owner, "n": name})
    command.upgrade(cfg, "head")
    with engine.connect() as c:
        got = dict(c.execute(text("select id, vault_path from env_vars")).all())
    assert got == {i: f"users/{owner}/{i}" for i, owner, _ in rows}
    with pytest.raises(Exception, match="(?i)null"), engine.begin() as c:  # required from now on
        c.execute(text("insert into env_vars (id, owner, name, description, created_at, updated_at) values "
                       "('33333333-3333-3333-3333-333333333333', 'carol', 'C', '', '2026-12-01 10:00:00', "
                       "'2026-12-01 10:00:00')"))
    command.downgrade(cfg, "0005")
    with engine.connect() as c:
        assert len(c.execute(text("select * from env_vars")).keys()) == 8 and \
            "vault_path" not in c.execute(text("select * from env_vars")).keys()
    engine.dispose()


def test_a_rollback_whose_database_half_fails_is_undone_and_the_undo_names_the_service(
        make_client, issuer, service_vault, tmp_path, monkeypatch):
    """The database refuses the rollback's row change (another writer holds SQLite's lock from just after
    the Vault write until the service writes the previous value back): the old current value is current
    again, and the version the service wrote says so."""
    import sqlite3

    from service.vault import UserVault

    db_file = tmp_path / "locked.db"
    client = make_client(f"sqlite:///{db_file}")
    user = "ver-locked"
    alice = bearer(issuer, user)
    ev = create_env_var(client, alice, "UNDONE", "first")
    client.put(f"{API}/{ev['id']}", json={"value": "second"}, headers=alice)
    # The request runs in the app's worker thread: the lock holder is shared with it.
    other = sqlite3.connect(db_file, isolation_level=None, check_same_thread=False)
    real_write, writes = UserVault.write, []

    def write(self, env_var_id, value):
        writes.append(env_var_id)
        if len(writes) == 2:  # the service writing the previous value back: the lock goes first
            other.execute("ROLLBACK")
        version = real_write(self, env_var_id, value)
        if len(writes) == 1:  # the rollback's own write: then the database is locked
            other.execute("BEGIN IMMEDIATE")
        return version

    monkeypatch.setattr(UserVault, "write", write)
    try:
        r = client.post(f"{API}/{ev['id']}/rollback", json={"version": 1}, headers=alice)
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
    assert r.status_code == 503 and r.json()["detail"] == \
        "the database is busy (a lock wait timed out); nothing was changed; retry", r.text
    assert len(writes) == 2 and stored_value(service_vault, user, ev["id"]) == "second"
    items = _versions(client, alice, ev["id"])["items"]
    assert [(v["version"], v["author"], v["user"], v["action"], v["rolled_back_from"]) for v in items] == [
        (4, "service", user, "restore", 2),  # the previous current value, written back by the service
        (3, None, None, None, None),  # the rollback's write, whose row change (and audit row) did not happen
        (2, "user", user, "update", None), (1, "user", user, "create", None)]


def test_an_unreachable_vault_fails_both_closed_with_503(make_client, issuer, service_vault, tmp_path):
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from devkit.net import free_port
    from service.app import create_app
    from tests.service.helpers import settings_for

    url = f"sqlite:///{tmp_path}/shared.db"
    alice = bearer(issuer, "ver-unreachable")
    ev = create_env_var(make_client(url), alice, "KEPT", "one")
    _, outputs = service_vault
    nowhere = SimpleNamespace(address=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with TestClient(create_app(settings=settings_for(nowhere, outputs, issuer, url, tmp_path))) as client:
        listed = client.get(f"{API}/{ev['id']}/versions", headers=alice)
        rolled = client.post(f"{API}/{ev['id']}/rollback", json={"version": 1}, headers=alice)
    for r in (listed, rolled):
        assert r.status_code == 503 and r.json()["detail"] == "Vault is unreachable or sealed; nothing was changed"
