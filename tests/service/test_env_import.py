""".env import and the activity view against a real OpenBao configured by the project, on SQLite and
PostgreSQL: statuses with line numbers, all-or-nothing (checked in Vault and in the database), a Vault
failure part-way undone, values byte-exact through a job (by hash), limits, and canaries searched in every
response, the log, the database and the metrics. The activity of one user is never another's."""
import hashlib
import json
import secrets

import hvac
import pytest
from sqlalchemy import select

from service.db import AuditEvent, EnvVar
from tests.service.helpers import bearer, wait_finished

pytestmark = pytest.mark.integration
API = "/api/v2/user/env-vars"
IMPORT = f"{API}/import"


def _canary() -> str:
    return f"canary-{secrets.token_hex(10)}"


def _root(service_vault) -> hvac.Client:
    server, _ = service_vault
    return hvac.Client(url=server.address, token=server.token)


def _vault_ids(service_vault, user) -> list:
    try:
        return sorted(_root(service_vault).secrets.kv.v2.list_secrets(path=f"users/{user}",
                                                                      mount_point="secret")["data"]["keys"])
    except hvac.exceptions.InvalidPath:
        return []


def _stored(service_vault, user, env_var_id) -> str:
    return _root(service_vault).secrets.kv.v2.read_secret_version(
        path=f"users/{user}/{env_var_id}", mount_point="secret", raise_on_deleted_version=True)["data"]["data"]["value"]


def _rows(client, user) -> list:
    """Every env_vars row of the user, claimed or not: (name, pending)."""
    with client.app.state.components.sessions() as s:
        return sorted(s.execute(select(EnvVar.name, EnvVar.pending).where(EnvVar.owner == user)).all())


def _audits(client, user) -> list:
    with client.app.state.components.sessions() as s:
        return s.execute(select(AuditEvent.action, AuditEvent.outcome).where(AuditEvent.actor == user)
                         .order_by(AuditEvent.id)).all()


def _create(client, headers, name, value) -> dict:
    r = client.post(API, json={"name": name, "value": value}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def _db_url(postgres, database):
    return postgres.url if database == "postgresql" else ""


def tricky(c: list[str]) -> str:
    """A file with one entry of each kind; the canaries c[0..5] are its values."""
    return "\n".join([
        "# the deploy job's settings",                  # 1
        f'export API_KEY="{c[0]}',                      # 2  a quoted value across two lines
        f'{c[1]} = two # not a comment"',               # 3
        f"PLAIN={c[2]}   # a comment",                  # 4
        "",                                             # 5
        f"1BAD={c[3]}",                                 # 6  invalid name
        f"LD_PRELOAD={c[3]}",                           # 7  reserved
        f"DUP={c[4]}",                                  # 8
        f"DUP={c[4]}",                                  # 9  duplicate
        f"{c[5]}",                                      # 10 no '=': its text is never shown
        f"EXISTING={c[5]}",                             # 11 existing
        f'UNCLOSED="{c[5]}',                            # 12 cannot be parsed
        "AFTER=ok",                                     # 13
    ]) + "\n"


EXPECTED = [(2, "API_KEY", "new"), (4, "PLAIN", "new"), (6, "1BAD", "invalid"), (7, "LD_PRELOAD", "reserved"),
            (8, "DUP", "new"), (9, "DUP", "duplicate"), (10, None, "invalid"), (11, "EXISTING", "existing"),
            (12, None, "invalid"), (13, "AFTER", "new")]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_preview_lists_lines_names_and_statuses_and_a_refused_import_writes_nothing(
        make_client, issuer, service_vault, postgres, database):
    client = make_client(_db_url(postgres, database))
    user = f"import-preview-{database}"
    alice = bearer(issuer, user)
    kept = _create(client, alice, "EXISTING", "the old value")
    canaries = [_canary() for _ in range(6)]
    text = tricky(canaries)

    preview = client.post(f"{IMPORT}/preview", json={"text": text}, headers=alice)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert [(e["line"], e["name"], e["status"]) for e in body["entries"]] == EXPECTED
    by_line = {e["line"]: e for e in body["entries"]}
    assert by_line[11]["env_var_id"] == kept["id"] and by_line[11]["decision"] is None
    assert by_line[7]["reason"].startswith("is reserved") and by_line[9]["reason"] == "is also on line 8"
    assert body["ready"] is False and any("EXISTING" in p for p in body["problems"])

    # Applied anyway, even with the existing name decided: refused whole, each refused entry located.
    r = client.post(IMPORT, json={"text": text, "decisions": {"EXISTING": "overwrite"}}, headers=alice)
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "text", n] for n in (6, 7, 9, 10, 12)]
    # Nothing anywhere: no row (claimed or not) but the old one, no value in Vault but the old one.
    assert _rows(client, user) == [("EXISTING", None)]
    assert _vault_ids(service_vault, user) == [kept["id"]]
    assert _stored(service_vault, user, kept["id"]) == "the old value"
    assert [a for a in _audits(client, user) if a[0] != "env_var.create"] == []
    for blob in (preview.text, r.text):
        for c in canaries:
            assert c not in blob


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_existing_name_without_a_decision_is_refused_naming_it(make_client, issuer, service_vault, postgres,
                                                                   database):
    client = make_client(_db_url(postgres, database))
    user = f"import-undecided-{database}"
    alice = bearer(issuer, user)
    kept = _create(client, alice, "TAKEN", "old")
    r = client.post(IMPORT, json={"text": "FRESH=1\nTAKEN=2\n"}, headers=alice)
    assert r.status_code == 422
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", "decisions", "TAKEN"] and "TAKEN" in problem["msg"]
    assert _rows(client, user) == [("TAKEN", None)] and _vault_ids(service_vault, user) == [kept["id"]]

    # Decided: skip keeps the old value, overwrite replaces it; the new one is created.
    r = client.post(IMPORT, json={"text": "FRESH=1\nTAKEN=2\n", "decisions": {"TAKEN": "skip"}}, headers=alice)
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["overwritten"], r.json()["skipped"]) == (1, 0, 1)
    assert _stored(service_vault, user, kept["id"]) == "old"
    r = client.post(IMPORT, json={"text": "FRESH=3\nTAKEN=4\n", "decisions": {"TAKEN": "overwrite", "FRESH": "overwrite"}},
                    headers=alice)
    assert r.status_code == 200, r.text
    assert [(e["line"], e["name"], e["action"]) for e in r.json()["entries"]] == [
        (1, "FRESH", "overwritten"), (2, "TAKEN", "overwritten")]
    ids = {e["name"]: e["env_var_id"] for e in r.json()["entries"]}
    assert _stored(service_vault, user, ids["FRESH"]) == "3" and _stored(service_vault, user, kept["id"]) == "4"
    assert _rows(client, user) == [("FRESH", None), ("TAKEN", None)]
    # The history names the user as the author of each imported version.
    history = client.get(f"/api/v2/user/env-vars/{kept['id']}/versions", headers=alice).json()["items"]
    assert [(v["version"], v["author"], v["user"], v["action"]) for v in history] == [
        (2, "user", user, "update"), (1, "user", user, "create")]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_vault_failure_part_way_undoes_every_write_of_the_import(make_client, issuer, service_vault, postgres,
                                                                   database):
    """The fourth value's write is refused by Vault (its key requires check-and-set, which the service does
    not send): the two new values written before it are destroyed, the overwritten one restored, and no row
    or claim remains."""
    client = make_client(_db_url(postgres, database))
    user = f"import-midway-{database}"
    alice = bearer(issuer, user)
    first = _create(client, alice, "FIRST", "first old")
    refusing = _create(client, alice, "REFUSING", "refusing old")
    _root(service_vault).secrets.kv.v2.update_metadata(path=f"users/{user}/{refusing['id']}", cas_required=True,
                                                       mount_point="secret")
    canaries = [_canary() for _ in range(5)]
    text = (f"NEW_ONE={canaries[0]}\nFIRST={canaries[1]}\nNEW_TWO={canaries[2]}\nREFUSING={canaries[3]}\n"
            f"NEW_THREE={canaries[4]}\n")
    r = client.post(IMPORT, json={"text": text, "decisions": {"FIRST": "overwrite", "REFUSING": "overwrite"}},
                    headers=alice)
    assert r.status_code == 503, r.text
    assert "nothing was imported" in r.json()["detail"] and "REFUSING, line 4" in r.json()["detail"]
    assert "the 3 value(s) written before it were undone" in r.json()["detail"]
    assert _vault_ids(service_vault, user) == sorted([first["id"], refusing["id"]])
    assert _stored(service_vault, user, first["id"]) == "first old"  # its previous value, back as the newest
    assert _stored(service_vault, user, refusing["id"]) == "refusing old"
    assert _rows(client, user) == [("FIRST", None), ("REFUSING", None)]
    assert ("env_var.import", "vault_error") in _audits(client, user)
    assert not any(c in r.text for c in canaries)
    # Still usable afterwards: nothing was left claimed.
    assert client.put(f"{API}/{first['id']}", json={"description": "free"}, headers=alice).status_code == 200


PRINT_HASHES = ("import hashlib, os, sys\n"
                "for name in sys.argv[1:]:\n"
                "    print(name, hashlib.sha256(os.environb[name.encode()]).hexdigest())\n")


def test_imported_values_reach_a_job_byte_exact(client, issuer, service_vault):
    """The values as the common dotenv parsers read them, written out here by hand (not by the parser the
    service uses), compared by hash with what a job received."""
    alice = bearer(issuer, "import-exact")
    text = ("export MULTI=\"first line\n  second = line # kept\nthird\"\n"
            "UNICODE='żółć ✓ 東京'\n"
            "EQ_HASH=\"a=b=c # not a comment\"\n"
            "TRAILING=\"  padded  \"\n"
            "ESCAPES=\"tab\\there\\nnewline \\\"quoted\\\" back\\\\slash\"\n"
            "LITERAL='no $EXPANSION \\n here'\n"
            "UNQUOTED=plain value   # comment\n"
            "DOLLAR=\"${HOME} stays\"\n")
    expected = {"MULTI": "first line\n  second = line # kept\nthird", "UNICODE": "żółć ✓ 東京",
                "EQ_HASH": "a=b=c # not a comment", "TRAILING": "  padded  ",
                "ESCAPES": 'tab\there\nnewline "quoted" back\\slash', "LITERAL": "no $EXPANSION \\n here",
                "UNQUOTED": "plain value", "DOLLAR": "${HOME} stays"}
    r = client.post(IMPORT, json={"text": text}, headers=alice)
    assert r.status_code == 200, r.text
    ids = {e["name"]: e["env_var_id"] for e in r.json()["entries"]}
    assert set(ids) == set(expected)
    run = client.post("/api/v2/execution", json={"command": ["python3", "-c", PRINT_HASHES, *expected],
                                                 "env_var_ids": list(ids.values())}, headers=alice)
    done = wait_finished(client, alice, run.json()["id"])
    assert done["status"] == "succeeded", done
    for name, value in expected.items():
        assert f"{name} {hashlib.sha256(value.encode()).hexdigest()}" in done["output"], name
        assert _stored(service_vault, "import-exact", ids[name]) == value


def test_limits_of_size_entries_and_rate(make_client, issuer):
    from service.core.env_import import MAX_BODY_BYTES, MAX_ENTRIES

    client = make_client(import_rate_limit="3/minute")
    alice = bearer(issuer, "import-limits")
    big = client.post(IMPORT, json={"text": "BIG=" + "x" * MAX_BODY_BYTES}, headers=alice)
    assert big.status_code == 413 and str(MAX_BODY_BYTES) in big.json()["detail"]
    many = client.post(f"{IMPORT}/preview", json={"text": "".join(f"V{i}=1\n" for i in range(MAX_ENTRIES + 1))},
                       headers=alice)
    assert many.status_code == 422 and f"at most {MAX_ENTRIES}" in many.text
    assert many.json()["detail"][0]["loc"] == ["body", "text"]
    bad = client.post(IMPORT, json={"text": "A=1", "decisions": {"A": "maybe"}}, headers=alice)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:2] == ["body", "decisions"]
    assert "maybe" not in bad.text  # a rejected input is not echoed
    limited = client.post(f"{IMPORT}/preview", json={"text": "A=1"}, headers=alice)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert client.get(API, headers=alice).status_code == 200  # only imports are limited this tightly
    assert client.get(API, headers=alice).json()["total"] == 0


def test_import_canaries_appear_nowhere_but_in_vault(make_client, issuer, service_vault, caplog, tmp_path):
    caplog.set_level("DEBUG")
    db_file = tmp_path / "import-canary.db"
    client = make_client(f"sqlite:///{db_file}")
    user = "import-canary"
    alice = bearer(issuer, user)
    good, refused, multi = _canary(), _canary(), f"{_canary()}\n{_canary()}"
    seen = [client.post(f"{IMPORT}/preview", json={"text": f"GOOD={good}\nPATH={refused}\n"}, headers=alice).text,
            client.post(IMPORT, json={"text": f"GOOD={good}\nPATH={refused}\n"}, headers=alice).text]
    applied = client.post(IMPORT, json={"text": f'GOOD={good}\nMULTI="{multi}"\n'}, headers=alice)
    assert applied.status_code == 200
    ids = {e["name"]: e["env_var_id"] for e in applied.json()["entries"]}
    run = client.post("/api/v2/execution", json={"command": ["sh", "-c", "echo $GOOD; echo \"$MULTI\""],
                                                 "env_var_ids": list(ids.values())}, headers=alice)
    done = wait_finished(client, alice, run.json()["id"])
    seen += [applied.text, json.dumps(done), client.get("/metrics").text, caplog.text,
             client.get(API, headers=alice).text, client.get("/api/v2/user/activity", headers=alice).text]
    client.close()
    files = [f.read_bytes() for f in tmp_path.glob("import-canary.db*")]
    for value in (good, refused, *multi.splitlines()):
        assert not any(value in blob for blob in seen)
        assert not any(value.encode() in f for f in files)
    assert _stored(service_vault, user, ids["GOOD"]) == good and _stored(service_vault, user, ids["MULTI"]) == multi


# --- activity --------------------------------------------------------------------------------------

ACTIVITY = "/api/v2/user/activity"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_activity_is_the_callers_own_newest_first_and_paged(make_client, issuer, postgres, database):
    client = make_client(_db_url(postgres, database))
    alice, bob = bearer(issuer, f"act-alice-{database}"), bearer(issuer, f"act-bob-{database}")
    canary = _canary()
    kept = _create(client, alice, "KEPT", canary)
    gone = _create(client, alice, "GONE", "soon gone")
    client.put(f"{API}/{kept['id']}", json={"value": canary + "-2"}, headers=alice)
    run = client.post("/api/v2/execution", json={"command": ["true"], "env_var_ids": [kept["id"], gone["id"]]},
                      headers=alice).json()
    wait_finished(client, alice, run["id"])
    client.delete(f"{API}/{gone['id']}", headers=alice)
    imported = client.post(IMPORT, json={"text": f"FROM_FILE={canary}\n"}, headers=alice)
    bobs = _create(client, bob, "BOBS", "bob's value")

    page = client.get(ACTIVITY, headers=alice)
    assert page.status_code == 200
    items = page.json()["items"]
    actions = [e["action"] for e in items]
    assert actions == ["env_var.import", "env_var.create", "env_var.delete", "execution.run", "execution.start",
                       "env_var.update", "env_var.create", "env_var.create"]
    assert page.json()["total"] == len(items)
    by_action = {}
    for e in items:
        by_action.setdefault(e["action"], []).append(e)
    assert by_action["env_var.delete"][0]["env_var"] == {"id": gone["id"], "name": "GONE", "exists": False}
    assert by_action["env_var.update"][0]["env_var"] == {"id": kept["id"], "name": "KEPT", "exists": True}
    assert by_action["env_var.create"][0]["env_var"]["name"] == "FROM_FILE"
    assert by_action["env_var.import"][0]["detail"] == "created=1 overwritten=0 skipped=0"
    started = by_action["execution.start"][0]
    assert started["execution_id"] == run["id"]
    assert {(e["name"], e["exists"]) for e in started["env_vars"]} == {("KEPT", True), ("GONE", False)}
    assert imported.status_code == 200
    # Paged, newest first; never a value; never another user's event.
    second = client.get(ACTIVITY, params={"limit": 3, "offset": 3}, headers=alice).json()
    assert [e["id"] for e in second["items"]] == [e["id"] for e in items[3:6]]
    assert canary not in page.text
    theirs = client.get(ACTIVITY, headers=bob).json()
    assert [(e["action"], e["env_var"]["id"]) for e in theirs["items"]] == [("env_var.create", bobs["id"])]
    assert all(e["id"] not in {x["id"] for x in items} for e in theirs["items"])
    assert client.get(ACTIVITY, params={"limit": 0}, headers=alice).status_code == 422


def test_a_sign_in_vault_refused_is_in_the_users_activity(make_client, issuer):
    """The service verified the token, Vault's JWT login refused it (here: a role Vault does not have)."""
    client = make_client(jwt_role="no-such-role")
    alice = bearer(issuer, "act-refused")
    r = client.post(API, json={"name": "NOPE", "value": "x"}, headers=alice)
    assert r.status_code == 403
    (event,) = client.get(ACTIVITY, headers=alice).json()["items"]
    assert (event["action"], event["outcome"], event["env_var"]) == ("sign_in.vault", "refused", None)
    assert client.get(ACTIVITY, headers=bearer(issuer, "act-someone-else")).json()["total"] == 0


def test_the_subject_of_a_refused_but_genuinely_signed_token_is_known(issuer):
    """Whose dashboard sign-in failed: known when the issuer signed the token (expired, another audience),
    never taken from a token whose signature is not the issuer's."""
    from service.auth import TokenVerifier

    verifier = TokenVerifier(issuer.jwks_url, issuer.iss, issuer.audience)
    assert verifier.signed_subject(issuer.token("late-alice", ttl=-60)) == "late-alice"
    assert verifier.signed_subject(issuer.token("other-aud", audience="another-client")) == "other-aud"
    assert verifier.signed_subject(issuer.token("forged", key=issuer.other_key())) is None
    assert verifier.signed_subject(issuer.token("elsewhere", iss="https://other.invalid")) is None
    assert verifier.signed_subject("not-a-jwt") is None
