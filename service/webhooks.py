"""Signed webhooks: each user's own, and one for the platform team (the stack's), told about leaks found,
env var changes, rollbacks and deletions, env vars expiring within N days, and dynamic credentials whose
revocation failed (service/executor/leases.py). A delivery never carries a
value (ids, names, versions, detectors, dates).

Signature (what a receiver checks; `verify` below is the reference):
  X-EnvVars-Timestamp: <unix seconds>
  X-EnvVars-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
A receiver refuses a timestamp older than its tolerance (a replay) and any signature that does not match
(a tampered body or timestamp).

Secrets: the stack's webhook secret is a file (a Pulumi secret of the stack, mounted like the service's
others). A user's webhook secret is derived from the service's webhook key (a file too) and the webhook's
id, so no signing secret sits in the database; it is shown to the user once, when the webhook is created.

Delivery: in a background pool, retried with exponential backoff on a failure (a connection error, a 5xx or
429) up to `attempts` times; every attempt is a row (`webhook_deliveries`: event, attempt, HTTP status or
error, when), listed to its owner.
"""
import datetime
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import requests
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from service.db import EnvVar, now
from service.db.leaks import ExpiryNotice, Webhook, WebhookDelivery

log = logging.getLogger("service")
TOLERANCE_SECONDS = 300
STACK = "stack"  # the webhook id of the stack's own webhook in delivery rows


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, at: Optional[float] = None,
           tolerance: int = TOLERANCE_SECONDS) -> bool:
    """A receiver's check: a recent timestamp, and the signature of exactly this timestamp and body."""
    if not timestamp.isdigit() or abs((time.time() if at is None else at) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


@dataclass(frozen=True)
class Target:
    webhook_id: str
    owner: Optional[str]  # None: the stack's
    url: str
    secret: bytes


class Webhooks:
    def __init__(self, sessions: sessionmaker, key: bytes, stack_url: str = "", stack_secret: bytes = b"",
                 attempts: int = 5, backoff_seconds: float = 1.0, timeout_seconds: float = 5.0, workers: int = 2):
        self._sessions, self._key = sessions, key
        self._stack = Target(STACK, None, stack_url, stack_secret) if stack_url else None
        self.attempts, self.backoff_seconds, self.timeout_seconds = attempts, backoff_seconds, timeout_seconds
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook")
        self._http = requests.Session()
        self._http.trust_env = False  # no proxy from the environment: the URL is the receiver
        self._pending = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def enabled(self) -> bool:
        """Users may add webhooks: there is a key to derive their secrets from."""
        return bool(self._key)

    def secret_for(self, webhook_id: str) -> bytes:
        """A user's webhook's signing secret: derived, never stored."""
        return hmac.new(self._key, b"webhook:" + webhook_id.encode(), hashlib.sha256).hexdigest().encode()

    def emit(self, event: str, owner: str, data: dict) -> None:
        """Queues the event for the owner's webhooks and the stack's; never raises (a failed delivery is logged)."""
        try:
            with self._sessions() as s:
                targets = [Target(w.id, owner, w.url, self.secret_for(w.id))
                           for w in s.scalars(select(Webhook).where(Webhook.owner == owner))]
        except Exception as err:  # noqa: BLE001 (the change that emits it has happened: it must not fail for this)
            log.warning(json.dumps({"event": "webhook_targets_unreadable", "error": type(err).__name__}))
            targets = []
        if self._stack:
            targets.append(self._stack)
        if not targets:
            return
        delivery = str(uuid.uuid4())
        body = json.dumps({"id": delivery, "event": event, "at": now().isoformat(), "user": owner, "data": data},
                          sort_keys=True, separators=(",", ":")).encode()
        for target in targets:
            with self._lock:
                self._pending += 1
            self._pool.submit(self._deliver, target, event, delivery, body)

    def idle(self, timeout: float = 30) -> bool:
        """True once every queued delivery has ended (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._pending == 0:
                    return True
            time.sleep(0.05)
        return False

    def shutdown(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def watch_expiry(self, days: int, every_seconds: float) -> None:
        """Every `every_seconds`, tells of each env var whose expiry is within `days` (env_var.expiring), once
        per env var and expiry date, across replicas (the first to insert its notice row sends it)."""
        def loop() -> None:
            while not self._stop.wait(every_seconds):
                try:
                    self.tell_expiring(days)
                except Exception:  # noqa: BLE001 (the next round tries again)
                    log.exception("expiry check failed")
        threading.Thread(target=loop, name="webhook-expiry", daemon=True).start()

    def tell_expiring(self, days: int) -> int:
        t = now()
        with self._sessions() as s:
            due = s.execute(select(EnvVar.id, EnvVar.owner, EnvVar.name, EnvVar.expires_at).where(
                EnvVar.expires_at.is_not(None), EnvVar.expires_at <= t + datetime.timedelta(days=days),
                EnvVar.visible())).all()
        told = 0
        for env_var_id, owner, name, expires in due:
            try:
                with self._sessions.begin() as s:
                    if s.get(ExpiryNotice, (env_var_id, expires)) is not None:
                        continue
                    s.add(ExpiryNotice(env_var_id=env_var_id, expires_at=expires))
            except IntegrityError:  # another replica told it
                continue
            when = expires if expires.tzinfo else expires.replace(tzinfo=datetime.timezone.utc)
            self.emit("env_var.expiring", owner, {"id": env_var_id, "name": name, "expires_at": when.isoformat(),
                                                  "within_days": days})
            told += 1
        return told

    def _deliver(self, target: Target, event: str, delivery: str, body: bytes) -> None:
        try:
            for attempt in range(1, self.attempts + 1):
                stamp = int(time.time())
                status, error = None, ""
                try:
                    r = self._http.post(target.url, data=body, timeout=self.timeout_seconds, allow_redirects=False,
                                        headers={"Content-Type": "application/json", "X-EnvVars-Event": event,
                                                 "X-EnvVars-Delivery": delivery, "X-EnvVars-Timestamp": str(stamp),
                                                 "X-EnvVars-Signature": sign(target.secret, stamp, body)})
                    status = r.status_code
                except requests.RequestException as err:
                    error = type(err).__name__
                self._log(target, event, delivery, attempt, status, error)
                if status is not None and status < 500 and status != 429:
                    return
                if attempt < self.attempts:
                    time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        finally:
            with self._lock:
                self._pending -= 1

    def _log(self, target: Target, event: str, delivery: str, attempt: int, status: Optional[int], error: str) -> None:
        try:
            with self._sessions.begin() as s:
                s.add(WebhookDelivery(webhook_id=target.webhook_id, owner=target.owner, event=event,
                                      delivery_id=delivery, attempt=attempt, status=status, error=error))
        except Exception as err:  # noqa: BLE001 (the delivery itself went on)
            log.warning(json.dumps({"event": "webhook_delivery_not_logged", "error": type(err).__name__}))
        log.info(json.dumps({"event": "webhook_delivery", "webhook": target.webhook_id, "type": event,
                             "attempt": attempt, "status": status, "error": error}))
