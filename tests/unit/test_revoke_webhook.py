"""`credential.revoke_failed`: the executor could not revoke a dynamic credential's lease (Vault refused or
was down). A real SQLite database and a Vault stub whose revoke raises; the event is recorded, then delivered
signed to a real HTTP receiver on loopback through the service's own Webhooks."""
import http.server
import json
import threading

import pytest
from prometheus_client import CollectorRegistry
from requests import ConnectionError as RequestsConnectionError
from sqlalchemy import select

from service.db import Execution, make_engine, migrate, session_factory
from service.db.dynamic import ExecutionCredential
from service.db.leaks import WebhookDelivery
from service.executor.leases import LeaseBroker, LeaseMetrics
from service.webhooks import STACK, Webhooks, verify

pytestmark = pytest.mark.unit
CANARY = "canary-lease-4f1d2b9e"  # planted in the lease id and the error's text: in no event


class RefusingVault:
    def revoke_lease(self, lease_id):
        raise RequestsConnectionError(f"refused while revoking {lease_id}")


@pytest.fixture
def sessions(tmp_path):
    url = f"sqlite:///{tmp_path}/leases.db"
    migrate(url)
    made = session_factory(make_engine(url))
    with made.begin() as s:  # an ended job whose lease is still outstanding: the reaper's work
        s.add(Execution(id="exec-1", owner="alice", command=["true"], status="failed", timeout_seconds=5))
        s.flush()
        s.add(ExecutionCredential(execution_id="exec-1", dynamic_env_var_id="dyn-1", name="DB", role="reader",
                                  env_names=["PGUSER"], lease_id=f"database/creds/reader/{CANARY}"))
    return made


def _broker(sessions, emit) -> LeaseBroker:
    return LeaseBroker(sessions, RefusingVault, gateway=None, metrics=LeaseMetrics(CollectorRegistry()), emit=emit)


def test_a_failed_revocation_is_told_once_with_ids_and_the_error_class_only(sessions):
    events = []
    broker = _broker(sessions, lambda event, owner, data: events.append((event, owner, data)))
    assert broker.reap() == 0 and broker.reap() == 0  # the reaper tries again: told once per lease
    assert events == [("credential.revoke_failed", "alice",
                       {"execution_id": "exec-1", "env_var_id": "dyn-1", "error": "VaultUnavailable"})]
    assert CANARY not in repr(events) and "refused" not in repr(events)
    with sessions() as s:
        cred = s.get(ExecutionCredential, ("exec-1", "dyn-1"))
        assert cred.revoked_at is None and cred.revoke_error.endswith(": VaultUnavailable")


def test_a_failed_revocation_reaches_the_platform_webhook_signed(sessions):
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the standard library's name)
            received.append(({k.lower(): v for k, v in self.headers.items()},
                             self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = b"platform-team-secret"
    hooks = Webhooks(sessions, b"", f"http://127.0.0.1:{server.server_address[1]}/hook", secret, attempts=1)
    try:
        _broker(sessions, hooks.emit).reap()
        assert hooks.idle(10)
    finally:
        hooks.shutdown()
        server.shutdown()
    [(headers, body)] = received
    assert verify(secret, headers["x-envvars-timestamp"], body, headers["x-envvars-signature"])
    assert not verify(secret, headers["x-envvars-timestamp"], body.replace(b"exec-1", b"exec-2"),
                      headers["x-envvars-signature"])  # tampered
    event = json.loads(body)
    assert (headers["x-envvars-event"], event["event"], event["user"]) == (
        "credential.revoke_failed", "credential.revoke_failed", "alice")
    assert event["data"] == {"execution_id": "exec-1", "env_var_id": "dyn-1", "error": "VaultUnavailable"}
    assert CANARY not in body.decode()
    with sessions() as s:
        [row] = s.scalars(select(WebhookDelivery)).all()
        assert (row.webhook_id, row.event, row.status) == (STACK, "credential.revoke_failed", 200)
