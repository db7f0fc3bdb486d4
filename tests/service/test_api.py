"""The env-vars API against a real OpenBao configured by the project, with SQLite and PostgreSQL."""
import datetime
import hashlib
import json
import secrets

import hvac
import jwt
import pytest

from service.schemas import EnvVarList
from tests.service.helpers import API, PRINT_ENCODED, PRINT_ENV, bearer, create_env_var, root_client, stored_value, wait_finished

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_env_var_lifecycle_never_returns_a_value(make_client, issuer, service_vault, postgres, database):
    client = make_client(postgres.url if database == "postgresql" else "")
    alice = bearer(issuer, f"alice-{database}")
    user = f"alice-{database}"
    value = f"v-{secrets.token_hex(8)}"
    created = create_env_var(client, alice, "API_TOKEN", value, "for the deploy job")
    assert set(created) == {"id", "name", "description", "created_at", "updated_at", "expires_at", "last_used_at",
                            "last_used_execution_id"}
    assert stored_value(service_vault, user, created["id"]) == value

    create_env_var(client, alice, "ZONE_NOTE", f"v-{secrets.token_hex(8)}", "ünïcode — and \"quotes\"\n")
    page = client.get(API, headers=alice)
    listed = page.json()
    assert listed["total"] == 2 and listed["items"][0] == created  # the same fields and timestamps as a create
    # The list is encoded from the rows (service/core/env_vars.py): byte for byte the schema's own encoding.
    assert EnvVarList.model_validate_json(page.content).model_dump_json().encode() == page.content
    client.delete(f"{API}/{listed['items'][1]['id']}", headers=alice)
    assert client.get(f"{API}/{created['id']}", headers=alice).json()["description"] == "for the deploy job"
    assert client.get(API, params={"q": "deploy"}, headers=alice).json()["total"] == 1
    assert client.get(API, params={"q": "nothing-like-it"}, headers=alice).json()["total"] == 0

    r = client.put(f"{API}/{created['id']}", json={"value": "second"}, headers=alice)
    assert r.status_code == 200 and "value" not in r.json()
    assert stored_value(service_vault, user, created["id"]) == "second"
    r = client.put(f"{API}/{created['id']}", json={"description": "renamed"}, headers=alice)
    assert r.json()["description"] == "renamed" and stored_value(service_vault, user, created["id"]) == "second"

    assert client.delete(f"{API}/{created['id']}", headers=alice).status_code == 204
    assert client.get(f"{API}/{created['id']}", headers=alice).status_code == 404
    with pytest.raises(hvac.exceptions.InvalidPath):
        stored_value(service_vault, user, created["id"])
    for r in (client.get(API, headers=alice), client.get("/healthz")):
        assert r.headers["cache-control"] == "no-store"


# In every value below: the no-echo check looks for it, so it is exact however short the value.
NOT_ECHOED = "not-echoed"


@pytest.mark.parametrize("body,field,status", [
    ({"name": "1ABC", "value": f"{NOT_ECHOED}-1"}, "name", 422),
    ({"name": "MY-VAR", "value": f"{NOT_ECHOED}-2"}, "name", 422),
    ({"name": "PATH", "value": f"{NOT_ECHOED}-3"}, "name", 422),
    ({"name": "LD_PRELOAD", "value": f"{NOT_ECHOED}-4"}, "name", 422),
    ({"name": "PATH\n", "value": f"{NOT_ECHOED}-5"}, "name", 422),  # `$` would match before a final newline
    ({"name": "OK\n", "value": f"{NOT_ECHOED}-6"}, "name", 422),
    ({"name": "A" * 129, "value": f"{NOT_ECHOED}-7"}, "name", 422),
    ({"name": "OK", "value": f"{NOT_ECHOED}-8", "description": "d" * 1025}, "description", 422),
    ({"name": "OK"}, "value", 422),
    ({"name": "OK", "value": f"{NOT_ECHOED}-10", "extra": 1}, "extra", 422),
    ({"name": "OK", "value": f"{NOT_ECHOED}-11\x00b"}, "value", 422),
    ({"name": "OK", "value": f"{NOT_ECHOED}-12-" + "x" * (64 * 1024)}, "value", 422),  # over the 64 KiB limit
])
def test_bad_input_names_the_field_and_never_echoes_the_value(client, issuer, body, field, status):
    r = client.post(API, json=body, headers=bearer(issuer, "validator"))
    assert r.status_code == status
    assert any(field in e["loc"] for e in r.json()["detail"]), r.text
    if "value" in body:
        assert NOT_ECHOED not in r.text  # found even if echoed JSON-escaped (the NUL) or truncated (the long one)
    assert client.get(API, headers=bearer(issuer, "validator")).json()["total"] == 0


def test_duplicate_names_conflict_per_user(client, issuer):
    create_env_var(client, bearer(issuer, "dup-a"), "SAME", "1")
    r = client.post(API, json={"name": "SAME", "value": "2"}, headers=bearer(issuer, "dup-a"))
    assert r.status_code == 409 and "SAME" in r.json()["detail"]
    create_env_var(client, bearer(issuer, "dup-b"), "SAME", "3")  # another user may


def test_unauthenticated_and_bad_tokens_are_401(client, issuer):
    assert client.get(API).status_code == 401
    assert client.get(API, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    wrong_aud = {"Authorization": f"Bearer {issuer.token('x', audience='other')}"}
    assert client.get(API, headers=wrong_aud).status_code == 401
    expired = {"Authorization": f"Bearer {issuer.token('x', ttl=-60)}"}
    assert client.get(API, headers=expired).status_code == 401
    newline = client.get(API, headers=bearer(issuer, "alice\n"))
    assert newline.status_code == 401 and "subject" in newline.json()["detail"]


def test_an_accepted_token_is_refused_once_it_expires_and_a_forgery_is_never_taken_for_it(client, issuer):
    """The service remembers a token it accepted (no signature check per request), never past its `exp`, and
    only that exact token: the same subject with another signature or audience is checked and refused."""
    import time

    sub = "remembered-carol"
    short = issuer.token(sub, ttl=2)
    assert client.get(API, headers={"Authorization": f"Bearer {short}"}).status_code == 200
    forged = {"Authorization": f"Bearer {issuer.token(sub, key=issuer.other_key())}"}
    assert client.get(API, headers=forged).status_code == 401
    other_aud = {"Authorization": f"Bearer {issuer.token(sub, audience='another-client')}"}
    assert client.get(API, headers=other_aud).status_code == 401
    time.sleep(max(0.0, jwt.decode(short, options={"verify_signature": False})["exp"] - time.time()) + 0.1)
    late = client.get(API, headers={"Authorization": f"Bearer {short}"})
    assert late.status_code == 401 and "Expired" in late.json()["detail"]


def test_users_never_see_touch_or_run_each_other(client, issuer):
    alice, bob = bearer(issuer, "iso-alice"), bearer(issuer, "iso-bob")
    mine = create_env_var(client, alice, "ALICE_ONLY", "alice secret")
    assert client.get(API, headers=bob).json()["total"] == 0
    unknown = "00000000-0000-0000-0000-000000000000"
    for method, path, body in (("get", f"{API}/{{}}", None), ("put", f"{API}/{{}}", {"description": "x"}),
                               ("delete", f"{API}/{{}}", None)):
        foreign = getattr(client, method)(path.format(mine["id"]), headers=bob, **({"json": body} if body else {}))
        missing = getattr(client, method)(path.format(unknown), headers=bob, **({"json": body} if body else {}))
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json() == missing.json()  # nothing tells that the id exists
    r = client.post("/api/v2/execution", json={"command": ["true"], "env_var_ids": [mine["id"]]}, headers=bob)
    assert r.status_code == 404
    run = client.post("/api/v2/execution", json={"command": ["true"], "env_var_ids": [mine["id"]]}, headers=alice)
    assert client.get(f"/api/v2/execution/{run.json()['id']}", headers=bob).status_code == 404


def test_execution_injects_values_byte_exact_and_stores_them_redacted(client, issuer):
    alice = bearer(issuer, "exec-alice")
    values = {"MULTI": "line one\nline two = still\n", "EQUALS": "a=b=c", "UNICODE": "żółć ✓ 東京",
              "SPACES": "  padded  "}
    ids = [create_env_var(client, alice, name, value)["id"] for name, value in values.items()]
    r = client.post("/api/v2/execution", json={"command": ["python3", "-c", PRINT_ENV, *values],
                                               "env_var_ids": ids}, headers=alice)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    done = wait_finished(client, alice, r.json()["id"])
    assert done["status"] == "succeeded" and done["exit_code"] == 0
    assert sorted(done["env_var_names"]) == sorted(values)
    for name, value in values.items():
        assert f"{name} {hashlib.sha256(value.encode()).hexdigest()}" in done["output"]
        assert value not in done["output"]
        assert f"[redacted:{name}]" in done["output"]


@pytest.mark.parametrize("backend", ["subprocess", "docker"])
def test_encoded_forms_of_a_value_never_reach_the_stored_output(make_client, issuer, backend):
    """A job printing base64, hex, percent- and JSON-encoded forms of a canary: none is stored. Redaction is
    the executor's, whatever the backend; both backends that run without a cluster are used."""
    client = make_client(executor_backend=backend)
    alice = bearer(issuer, f"encoded-{backend}")
    canary = f"c4n4ry-{secrets.token_hex(6)} \"q\" é/+~?>\nsecond-line-{secrets.token_hex(4)}"
    values = {"CANARY": canary, "FLAG": "on"}
    ids = [create_env_var(client, alice, name, value)["id"] for name, value in values.items()]
    r = client.post("/api/v2/execution", json={"command": ["python3", "-c", PRINT_ENCODED, *values],
                                               "env_var_ids": ids}, headers=alice)
    done = wait_finished(client, alice, r.json()["id"], timeout=60)
    assert done["status"] == "succeeded", done
    lines = done["output"].splitlines()
    assert f"CANARY sha256 {hashlib.sha256(canary.encode()).hexdigest()}" in lines  # the job had the value
    canary_forms = [line.split(" ", 1)[1] for line in lines if line.startswith("CANARY ") and "sha256" not in line]
    assert canary_forms and set(canary_forms) == {"[redacted:CANARY]"}, canary_forms
    for line in canary.splitlines():
        assert line not in done["output"]
    # "on" is too short to search for: its forms stay (its base64 is "b24="), and the execution says so.
    assert done["unredacted_env_vars"] == ["FLAG"]
    assert "FLAG b24=" in lines


def test_a_missing_value_fails_before_the_job_starts_naming_it(client, issuer, service_vault, tmp_path):
    alice = bearer(issuer, "missing-alice")
    ev = create_env_var(client, alice, "GONE", "will vanish")
    root_client(service_vault).secrets.kv.v2.delete_metadata_and_all_versions(path=f"users/missing-alice/{ev['id']}",
                                                                        mount_point="secret")
    r = client.post("/api/v2/execution", json={"command": ["echo", "job-started"], "env_var_ids": [ev["id"]]},
                    headers=alice)
    done = wait_finished(client, alice, r.json()["id"])
    assert done["status"] == "failed" and "GONE" in done["error"] and "did not start" in done["error"]
    assert "job-started" not in done["output"] and done["exit_code"] is None
    assert "envvars_missing_env_var_failures_total 1.0" in client.get("/metrics").text


def test_timeout_and_cancellation(client, issuer):
    alice = bearer(issuer, "slow-alice")
    r = client.post("/api/v2/execution", json={"command": ["sleep", "30"], "timeout_seconds": 1}, headers=alice)
    assert wait_finished(client, alice, r.json()["id"])["status"] == "timed_out"
    r = client.post("/api/v2/execution", json={"command": ["sleep", "30"]}, headers=alice)
    import time

    time.sleep(0.5)
    assert client.post(f"/api/v2/execution/{r.json()['id']}/cancel", headers=alice).status_code == 202
    assert wait_finished(client, alice, r.json()["id"])["status"] == "cancelled"


def test_execution_input_errors(client, issuer):
    alice = bearer(issuer, "exec-errors")
    for body, field in (({"command": []}, "command"), ({"command": ["x"], "env_var_ids": ["a", "a"]}, "env_var_ids"),
                        ({"command": ["x"], "timeout_seconds": 0}, "timeout_seconds"),
                        ({"command": ["x"], "timeout_seconds": 10 ** 6}, "timeout_seconds")):
        r = client.post("/api/v2/execution", json=body, headers=alice)
        assert r.status_code == 422 and any(field in e["loc"] for e in r.json()["detail"]), r.text


def test_rate_limit_answers_429_with_retry_after(make_client, issuer):
    client = make_client(rate_limit="5/minute")
    h = bearer(issuer, "hasty")
    codes = [client.get(API, headers=h).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    r = client.get(API, headers=h)
    assert int(r.headers["retry-after"]) >= 1
    assert client.get(API, headers=bearer(issuer, "patient")).status_code == 200  # per user


def test_readiness_and_metrics(client):
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"ready": True, "vault": "ok", "database": "ok"}
    text = client.get("/metrics").text
    assert "envvars_http_request_seconds_bucket" in text


def test_openapi_is_published(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/v2/user/env-vars", "/api/v2/user/env-vars/{env_var_id}", "/api/v2/execution",
            "/api/v2/execution/{execution_id}"} <= set(spec["paths"])


def test_a_canary_value_appears_nowhere_but_in_vault(make_client, issuer, service_vault, caplog, tmp_path):
    caplog.set_level("DEBUG")
    db_file = tmp_path / "canary.db"
    client = make_client(f"sqlite:///{db_file}")
    alice = bearer(issuer, "canary-alice")
    canary = f"CANARY-{secrets.token_hex(16)}"
    ev = create_env_var(client, alice, "CANARY", canary)
    client.put(f"{API}/{ev['id']}", json={"value": canary + "-2"}, headers=alice)
    bad = client.post(API, json={"name": "bad name", "value": canary}, headers=alice)
    run = client.post("/api/v2/execution", json={"command": ["sh", "-c", "echo $CANARY"], "env_var_ids": [ev["id"]]},
                      headers=alice)
    done = wait_finished(client, alice, run.json()["id"])
    seen = [bad.text, json.dumps(done), client.get("/metrics").text, caplog.text,
            client.get(API, headers=alice).text]
    for blob in seen:
        assert canary not in blob
    client.close()
    for f in tmp_path.glob("canary.db*"):
        assert canary.encode() not in f.read_bytes()
    assert stored_value(service_vault, "canary-alice", ev["id"]) == canary + "-2"


def test_a_replica_starting_leaves_a_live_siblings_job_alone_and_cancels_it(make_client, issuer, tmp_path):
    url = f"sqlite:///{tmp_path}/replicas.db"
    first = make_client(url)
    alice = bearer(issuer, "replica-alice")
    started = first.post("/api/v2/execution", json={"command": ["sleep", "30"]}, headers=alice).json()
    _wait_status(first, alice, started["id"], "running")
    second = make_client(url)  # a second replica on the same database, its sibling alive
    assert second.get(f"/api/v2/execution/{started['id']}", headers=alice).json()["status"] == "running"
    # The cancel reaches the replica that is not running the job; the owner stops it.
    assert second.post(f"/api/v2/execution/{started['id']}/cancel", headers=alice).status_code == 202
    body = wait_finished(second, alice, started["id"])
    assert body["status"] == "cancelled" and body["error"] == ""


def test_executions_of_a_gone_replica_are_taken_over(make_client, issuer, tmp_path):
    """A replica that died left one job running and one claimed but not started, their leases expired: the
    next replica fails the first, naming the replica, and runs the second (it never ran)."""
    from service.db import Execution, make_engine, migrate, now, session_factory

    url = f"sqlite:///{tmp_path}/gone.db"
    migrate(url)
    expired = now() - datetime.timedelta(seconds=60)
    with session_factory(make_engine(url)).begin() as s:
        for status, command in (("running", ["sleep", "30"]), ("queued", ["echo", "ran-once"])):
            s.add(Execution(owner="gone-alice", command=command, status=status, timeout_seconds=60,
                            claimed_by="pod-7-1234-abcdef", lease_until=expired))
    client = make_client(url)
    alice = bearer(issuer, "gone-alice")
    listed = client.get("/api/v2/execution", headers=alice).json()["items"]
    by_command = {tuple(e["command"]): e for e in listed}
    failed = by_command[("sleep", "30")]
    assert failed["status"] == "failed"
    assert "replica pod-7-1234-abcdef stopped renewing its lease" in failed["error"]
    rerun = wait_finished(client, alice, by_command[("echo", "ran-once")]["id"])
    assert rerun["status"] == "succeeded" and rerun["output"] == "ran-once\n"


def test_listing_executions_newest_first_paged_and_by_status(client, issuer):
    alice, bob = bearer(issuer, "list-alice"), bearer(issuer, "list-bob")
    env = create_env_var(client, alice, "LISTED", "v")
    ids = []
    for i in range(5):
        r = client.post("/api/v2/execution", json={"command": ["sh", "-c", f"exit {i % 2}"],
                                                   "env_var_ids": [env["id"]]}, headers=alice)
        ids.append(r.json()["id"])
        wait_finished(client, alice, ids[-1])
    client.post("/api/v2/execution", json={"command": ["true"]}, headers=bob)
    page = client.get("/api/v2/execution", params={"limit": 2}, headers=alice).json()
    assert page["total"] == 5 and [e["id"] for e in page["items"]] == ids[::-1][:2]
    assert page["items"][0]["env_var_names"] == ["LISTED"] and "output" not in page["items"][0]
    rest = client.get("/api/v2/execution", params={"limit": 2, "offset": 4}, headers=alice).json()
    assert [e["id"] for e in rest["items"]] == [ids[0]]
    failed = client.get("/api/v2/execution", params={"status": "failed"}, headers=alice).json()
    assert failed["total"] == 2 and {e["id"] for e in failed["items"]} == {ids[1], ids[3]}
    bad = client.get("/api/v2/execution", params={"status": "done"}, headers=alice)
    assert bad.status_code == 422 and "status" in bad.text
    assert client.get("/api/v2/execution", headers=bob).json()["total"] == 1  # never another user's


def _wait_status(client, headers, execution_id: str, status: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while client.get(f"/api/v2/execution/{execution_id}", headers=headers).json()["status"] != status:
        assert time.monotonic() < deadline, f"execution {execution_id} never became {status}"
        time.sleep(0.05)
