"""Per-job provenance (the KV version of each value a job received, reruns of the same or the latest
versions) and expiry (expires_at, the expiring filter and gauges, "last used"), against a real OpenBao
configured by the project, with SQLite and PostgreSQL (issue 16, items 2 and 4)."""
import datetime
import hashlib
import json
import re
import secrets
import time

import pytest

from service.schemas import EnvVarList
from tests.service.helpers import API, bearer, create_env_var, root_client, wait_finished

pytestmark = pytest.mark.integration
RUNS = "/api/v2/execution"
# The job prints the SHA-256 of the value it was given, then the value itself (which must be redacted).
PRINT_HASH = "import hashlib, os; v = os.environb[b'TOKEN']; print('sha', hashlib.sha256(v).hexdigest()); print(v.decode())"


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _run(client, headers, env_var_ids: list[str]) -> dict:
    r = client.post(RUNS, json={"command": ["python3", "-c", PRINT_HASH], "env_var_ids": env_var_ids}, headers=headers)
    assert r.status_code == 202, r.text
    return wait_finished(client, headers, r.json()["id"])


def _rerun(client, headers, execution_id: str, body=None):
    return client.post(f"{RUNS}/{execution_id}/rerun", headers=headers, **({} if body is None else {"json": body}))


def _total_runs(client, headers) -> int:
    return client.get(RUNS, headers=headers).json()["total"]


def _metric(client, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", client.get("/metrics").text, re.M)
    assert found, f"{name} is not published"
    return float(found.group(1))


def _in(seconds: float) -> str:
    return (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)).isoformat()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_versions_are_recorded_and_reruns_use_the_same_or_the_latest(make_client, issuer, service_vault, postgres,
                                                                      database):
    client = make_client(postgres.url if database == "postgresql" else "")
    user = f"prov-{database}"
    alice, bob = bearer(issuer, user), bearer(issuer, f"prov-bob-{database}")
    first, second = f"canary-{secrets.token_hex(12)}", f"canary-{secrets.token_hex(12)}"
    ev = create_env_var(client, alice, "TOKEN", first)
    listed = client.get(API, headers=alice).json()["items"][0]
    assert (listed["last_used_at"], listed["last_used_execution_id"]) == (None, None)

    one = _run(client, alice, [ev["id"]])
    assert one["status"] == "succeeded" and f"sha {_sha(first)}" in one["output"]
    assert one["env_vars"] == [{"id": ev["id"], "name": "TOKEN", "kv_version": 1}]
    assert client.put(f"{API}/{ev['id']}", json={"value": second}, headers=alice).status_code == 200
    two = _run(client, alice, [ev["id"]])
    assert f"sha {_sha(second)}" in two["output"] and two["env_vars"][0]["kv_version"] == 2

    # "Last used": the newest job that started with it, in the list (one query, the schema's own bytes)
    # and on the env var itself.
    page = client.get(API, headers=alice)
    assert EnvVarList.model_validate_json(page.content).model_dump_json().encode() == page.content
    item = page.json()["items"][0]
    assert item["last_used_execution_id"] == two["id"] and item["last_used_at"] == two["started_at"]
    assert client.get(f"{API}/{ev['id']}", headers=alice).json()["last_used_execution_id"] == two["id"]

    # Same versions: the first value again, though the env var now holds the second; latest (the default).
    r = _rerun(client, alice, one["id"], {"versions": "same"})
    assert r.status_code == 202 and r.json()["env_vars"][0]["kv_version"] == 1  # pinned from the start
    same = wait_finished(client, alice, r.json()["id"])
    assert same["status"] == "succeeded" and f"sha {_sha(first)}" in same["output"]
    assert same["command"] == one["command"] and same["env_vars"][0]["kv_version"] == 1
    r = _rerun(client, alice, one["id"])
    latest = wait_finished(client, alice, r.json()["id"])
    assert f"sha {_sha(second)}" in latest["output"] and latest["env_vars"][0]["kv_version"] == 2
    assert _rerun(client, alice, one["id"], {"versions": "oldest"}).status_code == 422

    # Someone else's job is not found, exactly like an unknown one.
    assert _rerun(client, bob, one["id"]).status_code == 404
    assert _rerun(client, alice, "no-such-job").status_code == 404

    # Version 1 destroyed (as kvMaxVersions pruning or its owner would): "same" is refused before anything
    # runs, naming the env var; "latest" still runs.
    root_client(service_vault).secrets.kv.v2.destroy_secret_versions(path=f"users/{user}/{ev['id']}", versions=[1],
                                                                mount_point="secret")
    before = _total_runs(client, alice)
    r = _rerun(client, alice, one["id"], {"versions": "same"})
    assert r.status_code == 409 and "TOKEN" in r.json()["detail"] and "version 1" in r.json()["detail"], r.text
    assert _total_runs(client, alice) == before
    assert _rerun(client, alice, two["id"], {"versions": "same"}).status_code == 202

    # Deleted: neither kind of rerun, and the env var is named.
    other = create_env_var(client, alice, "TOKEN_B", f"canary-{secrets.token_hex(12)}")
    three = _run(client, alice, [other["id"]])
    assert client.delete(f"{API}/{other['id']}", headers=alice).status_code == 204
    before = _total_runs(client, alice)
    for mode in ("same", "latest"):
        r = _rerun(client, alice, three["id"], {"versions": mode})
        assert r.status_code == 409 and "TOKEN_B" in r.json()["detail"] and "deleted" in r.json()["detail"]
    assert _total_runs(client, alice) == before

    everything = json.dumps([one, two, same, latest, page.json()]) + client.get("/metrics").text
    for value in (first, second):
        assert value not in everything


def test_a_pinned_version_gone_before_the_job_starts_fails_it_naming_the_env_var(make_client, issuer, service_vault):
    """The executor reads the pinned version itself: a version destroyed after the rerun was accepted fails
    the job before it starts (the fail-closed path of a missing value)."""
    client = make_client(max_workers=1)
    user = "prov-race"
    alice = bearer(issuer, user)
    ev = create_env_var(client, alice, "PINNED", f"canary-{secrets.token_hex(12)}")
    one = _run(client, alice, [ev["id"]])
    blocker = client.post(RUNS, json={"command": ["sleep", "30"]}, headers=alice).json()["id"]
    deadline = time.monotonic() + 10
    while client.get(f"{RUNS}/{blocker}", headers=alice).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = _rerun(client, alice, one["id"], {"versions": "same"})  # accepted: version 1 is there; it waits
    assert r.status_code == 202 and r.json()["status"] == "queued"
    root_client(service_vault).secrets.kv.v2.destroy_secret_versions(path=f"users/{user}/{ev['id']}", versions=[1],
                                                                mount_point="secret")
    client.post(f"{RUNS}/{blocker}/cancel", headers=alice)
    done = wait_finished(client, alice, r.json()["id"])
    assert done["status"] == "failed" and done["exit_code"] is None and done["started_at"] is None, done
    assert "version 1 of env var PINNED" in done["error"] and "did not start" in done["error"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_expiry_refuses_past_dates_fails_expired_jobs_and_is_filtered_and_counted(make_client, issuer, postgres,
                                                                                   database):
    client = make_client(postgres.url if database == "postgresql" else "")
    alice = bearer(issuer, f"expiry-{database}")
    canary = f"canary-{secrets.token_hex(12)}"
    for bad in (_in(-60), "2030-01-01T00:00:00", "next tuesday"):  # past; no zone; not a date
        r = client.post(API, json={"name": "SOON", "value": canary, "expires_at": bad}, headers=alice)
        assert r.status_code == 422 and any("expires_at" in e["loc"] for e in r.json()["detail"]), r.text
        assert canary not in r.text

    in_two_days = (datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=2)))
                   + datetime.timedelta(days=2)).replace(microsecond=0)
    soon = client.post(API, json={"name": "SOON", "value": canary, "expires_at": in_two_days.isoformat()},
                       headers=alice).json()
    later = create_env_var(client, alice, "LATER", "later value")
    never = create_env_var(client, alice, "NEVER", "never expires")
    assert soon["expires_at"] == in_two_days.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    assert never["expires_at"] is None
    r = client.put(f"{API}/{later['id']}", json={"expires_at": _in(30 * 86400)}, headers=alice)
    assert r.status_code == 200 and r.json()["expires_at"]
    r = client.put(f"{API}/{later['id']}", json={"expires_at": _in(-1)}, headers=alice)
    assert r.status_code == 422 and any("expires_at" in e["loc"] for e in r.json()["detail"])

    page = client.get(API, params={"expiring_within_days": 7}, headers=alice)
    assert [e["name"] for e in page.json()["items"]] == ["SOON"] and page.json()["total"] == 1
    assert EnvVarList.model_validate_json(page.content).model_dump_json().encode() == page.content
    assert client.get(API, params={"expiring_within_days": 31}, headers=alice).json()["total"] == 2
    assert client.get(API, params={"expiring_within_days": -1}, headers=alice).status_code == 422
    assert (_metric(client, "envvars_env_vars_expiring_within_7d"), _metric(client, "envvars_env_vars_expired")) == (1, 0)

    # Expired for real: a date a moment ahead, then waited for (the API refuses a past one, by design).
    r = client.put(f"{API}/{soon['id']}", json={"expires_at": _in(3)}, headers=alice)
    assert r.status_code == 200, r.text
    time.sleep(max(0.0, (datetime.datetime.fromisoformat(r.json()["expires_at"])
                         - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 0.2)
    r = client.post(RUNS, json={"command": ["echo", "job-started"], "env_var_ids": [soon["id"], never["id"]]},
                    headers=alice)
    done = wait_finished(client, alice, r.json()["id"])
    assert done["status"] == "failed" and done["exit_code"] is None and done["started_at"] is None, done
    assert "env var SOON expired at" in done["error"] and "did not start" in done["error"]
    assert "job-started" not in done["output"] and done["env_vars"][0]["kv_version"] is None
    assert _metric(client, "envvars_expired_env_var_failures_total") == 1
    assert (_metric(client, "envvars_env_vars_expiring_within_7d"), _metric(client, "envvars_env_vars_expired")) == (0, 1)
    assert [e["name"] for e in client.get(API, params={"expiring_within_days": 7}, headers=alice).json()["items"]] == [
        "SOON"]  # the expired ones are listed too
    assert client.get(API, headers=alice).json()["items"][2]["last_used_at"] is None  # SOON: never started

    # null clears it: the same job runs.
    r = client.put(f"{API}/{soon['id']}", json={"expires_at": None}, headers=alice)
    assert r.status_code == 200 and r.json()["expires_at"] is None
    r = client.post(RUNS, json={"command": ["echo", "job-started"], "env_var_ids": [soon["id"]]}, headers=alice)
    assert wait_finished(client, alice, r.json()["id"])["status"] == "succeeded"
    assert canary not in client.get("/metrics").text


def test_rerun_is_in_the_openapi_schema(client):
    spec = client.get("/openapi.json").json()
    assert "/api/v2/execution/{execution_id}/rerun" in spec["paths"]
    assert {"expiring_within_days"} <= {p["name"] for p in spec["paths"]["/api/v2/user/env-vars"]["get"]["parameters"]}
