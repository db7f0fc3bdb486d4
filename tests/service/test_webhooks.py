"""Signed webhooks against a real HTTP receiver: a user's webhook and the stack's get leak.found and env var
changed / rolled back / deleted events, each signed over its timestamp and body; the receiver verifies them,
and a replayed (old timestamp) or tampered delivery fails verification; a failing receiver is retried with
backoff and every attempt is logged with its status; no delivery carries a value."""
import http.server
import json
import secrets
import threading
import time

import pytest

from service.webhooks import verify
from tests.service.helpers import bearer, wait_finished

pytestmark = pytest.mark.integration
API = "/api/v2/user/env-vars"


class Receiver:
    """An HTTP server on a loopback port recording each POST; the first `fail` answers are 500s."""

    def __init__(self, fail: int = 0):
        self.received: list[tuple[dict, bytes]] = []
        self.fail = fail
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the standard library's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = 500 if outer.fail > 0 else 200
                outer.fail -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def receivers():
    made = []

    def make(fail: int = 0) -> Receiver:
        made.append(Receiver(fail))
        return made[-1]
    yield make
    for r in made:
        r.stop()


def _secret_file(tmp_path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value)
    path.chmod(0o400)
    return str(path)


def test_events_are_signed_verified_retried_logged_and_carry_no_value(make_client, issuer, tmp_path, receivers):
    user_hook, stack_hook = receivers(fail=2), receivers()
    stack_secret = secrets.token_hex(16)
    client = make_client(webhook_key_file=_secret_file(tmp_path, "webhook-key", secrets.token_hex(32)),
                         stack_webhook_url=stack_hook.url,
                         stack_webhook_secret_file=_secret_file(tmp_path, "stack-secret", stack_secret),
                         webhook_attempts=3, webhook_backoff_ms=100)
    hooks = client.app.state.components.webhooks
    alice = bearer(issuer, "hook-alice")
    created = client.post("/api/v2/user/webhooks", json={"url": user_hook.url}, headers=alice)
    assert created.status_code == 201, created.text
    hook, secret = created.json(), created.json()["secret"].encode()
    assert "secret" not in client.get("/api/v2/user/webhooks", headers=alice).json()["items"][0]
    bad = client.post("/api/v2/user/webhooks", json={"url": "file:///etc/passwd"}, headers=alice)
    assert bad.status_code == 422 and "url" in bad.text

    canaries = [f"canary-{secrets.token_hex(12)}" for _ in range(2)]
    ev = client.post(API, json={"name": "HOOKED", "value": canaries[0]}, headers=alice).json()
    assert client.put(f"{API}/{ev['id']}", json={"value": canaries[1]}, headers=alice).status_code == 200
    assert hooks.idle()  # the first event's retries (two 500s) are over before the next one is sent
    assert client.post(f"{API}/{ev['id']}/rollback", json={"version": 1}, headers=alice).status_code == 200
    assert hooks.idle()
    token = "ghp_" + secrets.token_hex(18)
    run = client.post("/api/v2/execution", json={"command": ["echo", token]}, headers=alice).json()
    wait_finished(client, alice, run["id"])
    assert hooks.idle()
    assert client.delete(f"{API}/{ev['id']}", headers=alice).status_code == 204
    assert hooks.idle()

    events = [json.loads(body)["event"] for _h, body in user_hook.received]
    assert events == ["env_var.changed"] * 3 + ["env_var.rolled_back", "leak.found", "env_var.deleted"]
    assert [json.loads(body)["event"] for _h, body in stack_hook.received] == \
        ["env_var.changed", "env_var.rolled_back", "leak.found", "env_var.deleted"]
    for receiver, key in ((user_hook, secret), (stack_hook, stack_secret.encode())):
        for headers, body in receiver.received:
            stamp, signature = headers["x-envvars-timestamp"], headers["x-envvars-signature"]
            assert verify(key, stamp, body, signature)
            assert not verify(key, stamp, body, signature, at=int(stamp) + 600)  # replayed later: refused
            tampered = body.replace(b'"user":"hook-alice"', b'"user":"hook-mallory"')
            assert tampered != body and not verify(key, stamp, tampered, signature)  # tampered: refused
            assert not verify(key, str(int(stamp) + 1), body, signature)
            assert not any(c.encode() in body for c in canaries) and token.encode() not in body
    leak = json.loads(user_hook.received[4][1])
    assert leak["user"] == "hook-alice" and leak["data"]["findings"] == [{"detector": "github_token", "line": 1}]
    assert json.loads(user_hook.received[3][1])["data"] == {"id": ev["id"], "name": "HOOKED", "version": 3,
                                                            "rolled_back_from": 1}

    logged = client.get(f"/api/v2/user/webhooks/{hook['id']}/deliveries", headers=alice).json()["items"]
    first = sorted((d for d in logged if d["delivery_id"] == json.loads(user_hook.received[0][1])["id"]),
                   key=lambda d: d["attempt"])
    assert [(d["attempt"], d["status"]) for d in first] == [(1, 500), (2, 500), (3, 200)]
    assert sum(1 for d in logged if d["status"] == 200) == 4
    assert client.get(f"/api/v2/user/webhooks/{hook['id']}/deliveries",
                      headers=bearer(issuer, "hook-bob")).status_code == 404
    assert client.delete(f"/api/v2/user/webhooks/{hook['id']}", headers=alice).status_code == 204


def test_a_receiver_that_never_answers_well_is_given_up_after_the_attempts(make_client, issuer, tmp_path, receivers):
    down = receivers(fail=100)
    client = make_client(webhook_key_file=_secret_file(tmp_path, "webhook-key", secrets.token_hex(32)),
                         webhook_attempts=3, webhook_backoff_ms=50)
    alice = bearer(issuer, "hook-carol")
    hook = client.post("/api/v2/user/webhooks", json={"url": down.url}, headers=alice).json()
    ev = client.post(API, json={"name": "X1", "value": "v-" + secrets.token_hex(8)}, headers=alice).json()
    started = time.monotonic()
    client.put(f"{API}/{ev['id']}", json={"description": "d"}, headers=alice)
    assert client.app.state.components.webhooks.idle()
    assert time.monotonic() - started >= 0.15  # 50 ms, then 100 ms of backoff
    logged = client.get(f"/api/v2/user/webhooks/{hook['id']}/deliveries", headers=alice).json()["items"]
    assert sorted((d["attempt"], d["status"]) for d in logged) == [(1, 500), (2, 500), (3, 500)]
    assert len(down.received) == 3


def test_an_env_var_expiring_soon_is_told_once(make_client, issuer, tmp_path, receivers):
    import datetime

    hook = receivers()
    client = make_client(webhook_key_file=_secret_file(tmp_path, "webhook-key", secrets.token_hex(32)),
                         webhook_expiry_check_seconds=1, webhook_expiring_days=7)
    alice = bearer(issuer, "hook-erin")
    secret = client.post("/api/v2/user/webhooks", json={"url": hook.url}, headers=alice).json()["secret"].encode()
    soon = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)).isoformat()
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).isoformat()
    ev = client.post(API, json={"name": "SOON", "value": "v-" + secrets.token_hex(8), "expires_at": soon}, headers=alice)
    client.post(API, json={"name": "LATER", "value": "v-" + secrets.token_hex(8), "expires_at": later}, headers=alice)
    deadline = time.monotonic() + 10
    while not hook.received and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.5)  # two more checks: still told once
    assert [json.loads(b)["event"] for _h, b in hook.received] == ["env_var.expiring"]
    headers, body = hook.received[0]
    assert verify(secret, headers["x-envvars-timestamp"], body, headers["x-envvars-signature"])
    data = json.loads(body)["data"]
    assert data["id"] == ev.json()["id"] and data["name"] == "SOON" and data["within_days"] == 7
