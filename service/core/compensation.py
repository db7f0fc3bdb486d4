"""The Vault half of a change whose row half did not happen, undone: the old value restored, or a create's
value destroyed (in the background when Vault fails, or may still apply a write it never answered)."""
import json
import logging
import threading
import time

from sqlalchemy.exc import SQLAlchemyError

from service.auth import Caller
from service.components import Components
from service.db.audit import SERVICE, audit, written
from service.vault import UserVault, VaultDenied, VaultUnavailable

log = logging.getLogger("service")
UNDO_SECONDS = 600  # how long an unanswered create is undone in the background, at most


def restore(c: Components, who: Caller, vault: UserVault, env_var_id: str, version: int) -> None:
    """Writes the value of `version` back as the newest version (a change's database half failed), with an
    audit row naming the service as that version's author when the database takes one."""
    old = vault.read_version(env_var_id, version)
    if old is None:
        return
    new = vault.write(env_var_id, old)
    try:
        audit(c.sessions, SERVICE, "env_var.restore", env_var_id, "ok", written(new, version, who.user))
    except SQLAlchemyError as err:
        log.warning(json.dumps({"event": "audit_not_written", "action": "env_var.restore",
                                "error": type(err).__name__}))


def compensate(action, env_var_id: str, c: Components) -> None:
    try:
        action(env_var_id)
    except Exception:  # noqa: BLE001 (reported by the drift check)
        c.metrics.vault_errors.labels(operation="compensate").inc()


def undo(vault: UserVault, env_var_id: str, c: Components) -> None:
    """Destroys the value of a create that did not happen: at once, or in the background if Vault fails."""
    try:
        vault.destroy(env_var_id)
    except (VaultUnavailable, VaultDenied):
        undo_in_background(vault, env_var_id, c)


def undo_in_background(vault: UserVault, env_var_id: str, c: Components) -> None:
    threading.Thread(target=_destroy_until_gone, args=(vault, env_var_id, c), daemon=True,
                     name=f"undo-{env_var_id[:8]}").start()


def _destroy_until_gone(vault: UserVault, env_var_id: str, c: Components) -> None:
    """Destroys a value whose row is gone but whose write got no answer. Vault may apply that write late,
    even after this destroy (it had the request, the client gave up): so destroy, look again a little
    later, destroy again if it came back. While Vault fails, retried with backoff for a bounded time and
    only while the user's Vault session is valid. A value left over is logged and counted, and `python -m
    service check` reports it."""
    deadline = min(time.monotonic() + UNDO_SECONDS, vault.expires)
    backoff = 0.5
    while time.monotonic() < deadline:
        try:
            vault.destroy(env_var_id)
            time.sleep(min(c.settings.vault_timeout_seconds, 5))  # time for a late write to land
            if vault.current_version(env_var_id) is None:
                return
            continue  # it came back: destroy again
        except VaultDenied:
            break  # the user's token is gone: nothing more can be done as the user
        except VaultUnavailable:
            pass
        time.sleep(backoff)
        backoff = min(backoff * 2, 30)
    c.metrics.vault_errors.labels(operation="compensate_failed").inc()
    log.error(json.dumps({"event": "compensation_failed", "user": vault.user, "env_var_id": env_var_id,
                          "detail": "a value without its row may remain in Vault: see python -m service check"}))
