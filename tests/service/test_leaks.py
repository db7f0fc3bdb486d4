"""Leak detection and response against the real service: jobs in the real sandbox (and a container on the
real engine) print secrets the service never gave them and forms of their own values that redaction misses;
each is found, masked in the stored output, recorded without the secret, counted, alerted on by its metric
and shown in the owner's activity; a registered value marks its env var possibly compromised, which blocks a
rerun of the same versions until the owner overrides it; rotation and dismissal as a false positive."""
import base64
import glob
import json
import random
import string

import pytest

from tests.service.helpers import bearer, wait_finished

pytestmark = pytest.mark.integration
API = "/api/v2/user/env-vars"
ALNUM = string.ascii_letters + string.digits
RANDOM_SEED = 38

# Prints each argument as its own write, flushed, with a pause between: separate reads of the pipe. Each
# argument is the hex of the text reversed, so the secrets are in no stored command (searched for below).
WRITES = ("import sys, time\nfor a in sys.argv[1:]:\n    sys.stdout.write(bytes.fromhex(a).decode()[::-1]); "
          "sys.stdout.flush(); time.sleep(0.15)\n")


def _hidden(text: str) -> str:
    return text[::-1].encode().hex()


def _rand(rnd: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rnd.choice(alphabet) for _ in range(n))


def _jwt(rnd: random.Random) -> str:
    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256'})}.{part({'sub': _rand(rnd, 8), 'aud': 'x'})}.{_rand(rnd, 86, ALNUM + '-_')}"


def _pem(rnd: random.Random) -> str:
    body = "\n".join(base64.b64encode(rnd.randbytes(48)).decode() for _ in range(20))
    return f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"


def _run(client, headers, command, env_var_ids=()) -> dict:
    r = client.post("/api/v2/execution", json={"command": command, "env_var_ids": list(env_var_ids)}, headers=headers)
    assert r.status_code == 202, r.text
    return wait_finished(client, headers, r.json()["id"])


def _create(client, headers, name, value) -> dict:
    r = client.post(API, json={"name": name, "value": value}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def _findings(client, headers, execution_id) -> list[dict]:
    r = client.get("/api/v2/user/leaks", params={"execution_id": execution_id}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _database_text(tmp_path) -> str:
    return "".join(open(p, "rb").read().decode("latin-1") for p in glob.glob(f"{tmp_path}/envvars-*.db*"))


def test_secrets_the_job_minted_are_found_masked_recorded_counted_and_shown(client, issuer, tmp_path):
    rnd = random.Random(RANDOM_SEED)  # the same synthetic secrets every run (checked to be detectable)
    secrets_ = {
        "github_token": "ghp_" + _rand(rnd, 36),
        "aws_access_key_id": "AKIA" + _rand(rnd, 16, string.ascii_uppercase + string.digits),
        "jwt": _jwt(rnd),
        "connection_string_password": _rand(rnd, 24),
        "private_key": _pem(rnd),
        "high_entropy": base64.urlsafe_b64encode(rnd.randbytes(30)).decode(),
    }
    pem = secrets_["private_key"]
    writes = [f"build ok\nexport GITHUB_TOKEN={secrets_['github_token']}\n",
              f"aws {secrets_['aws_access_key_id']}\n", f"Authorization: Bearer {secrets_['jwt']}\n",
              f"DATABASE_URL=postgresql://app:{secrets_['connection_string_password']}@db:5432/app\n",
              pem[:len(pem) // 2], pem[len(pem) // 2:],  # a PEM block over two writes
              f"minted {secrets_['high_entropy']}\ndone\n"]
    alice = bearer(issuer, "leak-alice")
    run = _run(client, alice, ["python3", "-c", WRITES, *map(_hidden, writes)])
    assert run["status"] == "succeeded", run
    out = run["output"]
    for detector, secret in secrets_.items():
        assert secret.strip() not in out and f"[masked:{detector}]" in out, (detector, out)
    assert out.startswith("build ok\nexport GITHUB_TOKEN=[masked:github_token]\n") and out.endswith("done\n")

    findings = _findings(client, alice, run["id"])
    assert sorted(f["detector"] for f in findings) == sorted(secrets_)
    by = {f["detector"]: f for f in findings}
    assert by["github_token"]["line"] == 2 and by["github_token"]["excerpt"] == "export GITHUB_TOKEN=[masked:github_token]"
    assert by["private_key"]["excerpt"] == "[masked:private_key]"
    assert all(f["status"] == "open" and f["env_var"] is None for f in findings)
    body = json.dumps(findings)
    assert not any(s.strip() in body or s.strip()[:16] in body for s in secrets_.values())

    activity = client.get("/api/v2/user/activity", headers=alice).json()["items"]
    leak = [a for a in activity if a["action"] == "execution.leak"]
    assert leak and leak[0]["execution_id"] == run["id"] and "findings=6" in leak[0]["detail"]
    metrics = client.get("/metrics").text
    for detector in secrets_:
        assert f'envvars_leak_findings_total{{detector="{detector}"}} 1.0' in metrics
    # The output and the findings are the owner's only.
    bob = bearer(issuer, "leak-bob")
    assert client.get(f"/api/v2/execution/{run['id']}", headers=bob).status_code == 404
    assert _findings(client, bob, run["id"]) == []
    # Nothing of any secret in the database file (its WAL included).
    stored = _database_text(tmp_path)
    assert stored and not any(s.strip()[:20] in stored for s in secrets_.values())


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_leaked_registered_value_marks_its_env_var_and_blocks_a_same_version_rerun(make_client, issuer, postgres,
                                                                                    database):
    client = make_client(postgres.url if database == "postgresql" else "")
    rnd = random.Random(RANDOM_SEED)  # the same synthetic secrets every run (checked to be detectable)
    value = "tok-" + _rand(rnd, 36, ALNUM + "-_")  # 40 characters: its base64 is not aligned on 3 bytes
    alice = bearer(issuer, f"leak-carol-{database}")
    ev = _create(client, alice, "DEPLOY_TOKEN", value)
    # Forms redaction misses: base64 split over two writes, JSON inside base64, reversed; and a suffix
    # (redacted: the value is whole).
    b64 = base64.b64encode(value.encode()).decode()
    script = ("import base64, json, os, sys, time\nv = os.environ['DEPLOY_TOKEN']\nb = base64.b64encode(v.encode()).decode()\n"
              "print(b[:15], flush=True); time.sleep(0.15); print(b[15:], flush=True)\n"
              "print(base64.b64encode(json.dumps({'token': v, 'ci': True}).encode()).decode())\n"
              "print(v[::-1])\nprint(v + '-suffix')\n")
    run = _run(client, alice, ["python3", "-c", script], [ev["id"]])
    assert run["status"] == "succeeded", run
    out = run["output"]
    assert value not in out and b64[:15] not in out and value[::-1] not in out and value[4:20] not in out
    assert "[redacted:DEPLOY_TOKEN]-suffix" in out
    findings = _findings(client, alice, run["id"])
    assert [f["detector"] for f in findings] == ["own_value"] * 3
    assert all(f["env_var"] == {"id": ev["id"], "name": "DEPLOY_TOKEN"} and f["kv_version"] == 1 for f in findings)

    listed = client.get(f"{API}/compromised", headers=alice).json()["items"]
    assert listed == [{"id": ev["id"], "name": "DEPLOY_TOKEN", "exposed_by": [run["id"]],
                       "versions": [{"kv_version": 1, "state": "possibly", "since": listed[0]["versions"][0]["since"],
                                     "exposed_by": [run["id"]]}]}]
    assert client.get(f"{API}/{ev['id']}/compromised", headers=alice).json()["exposed_by"] == [run["id"]]

    same = client.post(f"/api/v2/execution/{run['id']}/rerun", json={"versions": "same"}, headers=alice)
    assert same.status_code == 409 and "DEPLOY_TOKEN" in same.json()["detail"] and "possibly compromised" in same.json()["detail"]
    forced = client.post(f"/api/v2/execution/{run['id']}/rerun", json={"versions": "same", "allow_compromised": True},
                         headers=alice)
    assert forced.status_code == 202, forced.text
    wait_finished(client, alice, forced.json()["id"])

    rotated = client.post(f"{API}/{ev['id']}/rotate", json={"value": "tok-" + _rand(rnd, 36)}, headers=alice)
    assert rotated.status_code == 200 and rotated.json()["compromised_versions"] == [1], rotated.text
    versions = client.get(f"{API}/{ev['id']}/compromised", headers=alice).json()["versions"]
    assert [(v["kv_version"], v["state"]) for v in versions] == [(1, "compromised")]
    again = client.post(f"/api/v2/execution/{run['id']}/rerun", json={"versions": "same"}, headers=alice)
    assert again.status_code == 409 and "version 1 of env var DEPLOY_TOKEN is compromised" in again.json()["detail"]
    latest = client.post(f"/api/v2/execution/{run['id']}/rerun", json={"versions": "latest"}, headers=alice)
    assert latest.status_code == 202
    assert client.get(f"{API}/compromised", headers=bearer(issuer, f"leak-dave-{database}")).json()["items"] == []


def test_a_value_of_another_env_var_is_matched_by_hash_and_a_dismissal_allowlists_it(client, issuer):
    rnd = random.Random(RANDOM_SEED)  # the same synthetic secrets every run (checked to be detectable)
    alice = bearer(issuer, "leak-erin")
    other = base64.urlsafe_b64encode(rnd.randbytes(30)).decode()
    ev = _create(client, alice, "OTHER_KEY", other)
    _run(client, alice, ["true"], [ev["id"]])  # a job received it: its hash is known from now on
    # A job without OTHER_KEY prints it (as if fetched elsewhere): a high-entropy finding matching it by hash.
    run = _run(client, alice, ["echo", f"fetched {other}"])
    (finding,) = _findings(client, alice, run["id"])
    assert finding["detector"] == "high_entropy" and finding["env_var"] == {"id": ev["id"], "name": "OTHER_KEY"}
    assert client.get(f"{API}/compromised", headers=alice).json()["items"][0]["name"] == "OTHER_KEY"

    bad = client.post(f"/api/v2/user/leaks/{finding['id']}/dismiss", json={}, headers=alice)
    assert bad.status_code == 422 and "reason" in bad.text
    assert client.post(f"/api/v2/user/leaks/{finding['id']}/dismiss", json={"reason": "x"},
                       headers=bearer(issuer, "leak-frank")).status_code == 404
    done = client.post(f"/api/v2/user/leaks/{finding['id']}/dismiss", json={"reason": "a test fixture, not live"},
                       headers=alice)
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["dismissed_by"], done.json()["dismissed_reason"]) == \
        ("dismissed", "leak-erin", "a test fixture, not live")
    assert client.get(f"{API}/compromised", headers=alice).json()["items"] == []
    again = _run(client, alice, ["echo", f"fetched {other}"])
    assert _findings(client, alice, again["id"]) == [] and other in again["output"]  # allowlisted for this user
    activity = [a["action"] for a in client.get("/api/v2/user/activity", headers=alice).json()["items"]]
    assert "leak.dismiss" in activity


def test_the_docker_backend_goes_through_the_same_output_path(make_client, issuer, toolchain):
    client = make_client(executor_backend="docker", docker_image="localhost/vault-envvars/debian-python:bookworm-r2",
                         docker_host=toolchain["docker_host"])
    token = "ghp_" + _rand(random.Random(RANDOM_SEED), 36)
    alice = bearer(issuer, "leak-docker")
    run = _run(client, alice, ["python3", "-c", f"print('gh {token}')"])
    assert run["status"] == "succeeded" and run["output"] == "gh [masked:github_token]\n", run
    assert [f["detector"] for f in _findings(client, alice, run["id"])] == ["github_token"]
