"""/api/v2/user/env-vars: the caller's env vars. Values are write-only: no route ever returns one.

Consistency between a row and its Vault value, without ever holding a database lock or transaction
across a Vault call (a hung Vault must not block other users' writes):
1. a change claims its row (`pending`, with a lease) in a short transaction of its own; a create inserts
   its row already claimed, and such a row does not exist for anyone until its value is in Vault;
2. then Vault, with no transaction open;
3. then the row is updated or deleted only where the claim is still this request's (WHERE pending =
   its token); when it is not, the Vault half is compensated.
A change finding the row claimed waits for nothing: 409 (retry), or 404 when the row is being deleted.
A Vault write that got no answer may still be applied later: a create's is undone in the background.
"""
import json
import logging
import threading
import time
import uuid
from datetime import timedelta

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from service.auth import Caller
from service.db import EnvVar, now
from service.schemas import EnvVarCreate, EnvVarList, EnvVarOut, EnvVarUpdate
from service.vault_access import UserVault, VaultDenied, VaultUnanswered, VaultUnavailable

from .deps import Components, audit, audit_row, caller, components, db, field_error

router = APIRouter(prefix="/api/v2/user/env-vars", tags=["env-vars"])
log = logging.getLogger("service")
UNDO_SECONDS = 600  # how long an unanswered create is undone in the background, at most
BUSY = "another change to this env var is in progress; retry"


def _out(e: EnvVar, **changed) -> EnvVarOut:
    fields = dict(id=e.id, name=e.name, description=e.description, created_at=e.created_at, updated_at=e.updated_at)
    return EnvVarOut(**{**fields, **changed})


def _check_value(value: str, c: Components) -> None:
    if len(value.encode("utf-8")) > c.settings.value_max_bytes:
        raise field_error(("body", "value"), f"must be at most {c.settings.value_max_bytes} bytes (UTF-8)")
    if "\x00" in value:
        raise field_error(("body", "value"), "must not contain NUL characters (an environment cannot hold them)")


def _vault_as(who: Caller, c: Components) -> UserVault:
    try:
        return c.gateway.as_user(who.token, who.user)
    except VaultUnavailable as err:
        c.metrics.vault_errors.labels(operation="login").inc()
        raise HTTPException(503, f"{err}; nothing was changed") from None
    except VaultDenied:
        raise HTTPException(403, "Vault refused your token (revoked or expired); sign in again") from None


def _vault_error(err: Exception, outcome: str) -> HTTPException:
    """What happened, blaming the right thing: the token (403), or Vault itself (503, its own words:
    unreachable or sealed, no answer in time, an error)."""
    if isinstance(err, VaultDenied):
        return HTTPException(403, f"Vault refused your token (revoked or expired); {outcome}; sign in again")
    return HTTPException(503, f"{err}; {outcome}")


def lock_wait(err: SQLAlchemyError) -> bool:
    """SQLite's busy wait ran out, or PostgreSQL gave up a lock wait (lock_timeout, statement_timeout,
    a deadlock): the database works, it was busy."""
    orig = getattr(err, "orig", None)
    return isinstance(err, OperationalError) and (
        "database is locked" in str(orig) or getattr(orig, "sqlstate", None) in ("55P03", "57014", "40P01"))


def _db_error(err: SQLAlchemyError, outcome: str) -> HTTPException:
    if lock_wait(err):
        return HTTPException(503, f"the database is busy (a lock wait timed out); {outcome}; retry",
                             headers={"Retry-After": "1"})
    log.error(json.dumps({"event": "database_error", "error": type(err).__name__}))
    return HTTPException(503, f"the database is unavailable; {outcome}")


def _rows(s: Session, statement) -> int:
    """Runs a conditional UPDATE or DELETE; how many rows it matched. Loaded objects are not synchronised:
    the handlers answer from the values they wrote."""
    return s.execute(statement, execution_options={"synchronize_session": False}).rowcount


def _lease(c: Components):
    # Outlives the claim's own Vault calls (two at most, each bounded by the timeout); a claim whose
    # request died runs out and the next change takes it over.
    return timedelta(seconds=2 * c.settings.vault_timeout_seconds + 30)


def _owned(s: Session, who: Caller, env_var_id: str) -> EnvVar:
    e = s.get(EnvVar, env_var_id)
    # Someone else's id looks exactly like an unknown one; a row still being created does not exist yet.
    if e is None or e.owner != who.user or e.being_created:
        raise HTTPException(404, "env var not found")
    s.commit()  # ends the read: no transaction stays open across the Vault calls that follow
    return e


def _change(s: Session, who: Caller, env_var_id: str, values: dict, ok=None, deleting: bool = False) -> None:
    """One conditional UPDATE of the caller's row (a claim, or a change needing no Vault call, with its
    audit row `ok`) in a short transaction of its own, only where no live claim holds the row."""
    t = now()
    free = EnvVar.pending.is_(None) | (EnvVar.pending_until < t)
    try:
        changed = _rows(s, update(EnvVar).where(EnvVar.id == env_var_id, EnvVar.owner == who.user,
                                                EnvVar.visible(), free).values(**values))
        if changed and ok is not None:
            s.add(ok)
        holder = None if changed else s.execute(
            select(EnvVar.pending).where(EnvVar.id == env_var_id, EnvVar.owner == who.user)).first()
        s.commit()
    except SQLAlchemyError as err:
        s.rollback()
        raise _db_error(err, "nothing was changed") from None
    if not changed:
        held_by = str(holder.pending) if holder else ""
        # Gone, or not there yet; a delete meeting another delete answers as if that one had finished.
        if holder is None or held_by.startswith("create:") or (deleting and held_by.startswith("delete:")):
            raise HTTPException(404, "env var not found")
        raise HTTPException(409, BUSY)


def _claim(s: Session, who: Caller, env_var_id: str, kind: str, c: Components) -> str:
    token = f"{kind}:{uuid.uuid4()}"
    _change(s, who, env_var_id, {"pending": token, "pending_until": now() + _lease(c)}, deleting=kind == "delete")
    return token


def _release(c: Components, env_var_id: str, token: str, drop: bool = False) -> None:
    """Ends a failed change's claim (`drop`: deletes the row a failed create inserted) in a transaction of
    its own. If the database fails too, the claim's lease runs out instead."""
    statement = delete(EnvVar) if drop else update(EnvVar).values(pending=None, pending_until=None)
    try:
        with c.sessions() as s, s.begin():
            _rows(s, statement.where(EnvVar.id == env_var_id, EnvVar.pending == token))
    except SQLAlchemyError as err:
        log.warning(json.dumps({"event": "claim_not_released", "env_var_id": env_var_id,
                                "error": type(err).__name__}))


def _failed(c: Components, who: Caller, action: str, target: str, outcome: str, detail: str = "") -> None:
    """The audit row of a failure; the database failing too must not hide what the caller is told."""
    try:
        audit(c.sessions, who.user, action, target, outcome, detail)
    except SQLAlchemyError as err:
        log.warning(json.dumps({"event": "audit_not_written", "action": action, "error": type(err).__name__}))


def _still_there(s: Session, env_var_id: str) -> bool:
    try:
        return bool(s.scalar(select(func.count()).select_from(EnvVar).where(EnvVar.id == env_var_id)))
    finally:
        s.rollback()


@router.get("", response_model=EnvVarList)
def list_env_vars(q: str = Query("", max_length=128, description="substring of the name or description"),
                  limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10_000_000),
                  who: Caller = Depends(caller), s: Session = Depends(db)) -> EnvVarList:
    where = [EnvVar.owner == who.user, EnvVar.visible()]
    if q:
        like = f"%{q.lower()}%"
        where.append(func.lower(EnvVar.name).like(like) | func.lower(EnvVar.description).like(like))
    total = s.scalar(select(func.count()).select_from(EnvVar).where(*where))
    rows = s.scalars(select(EnvVar).where(*where).order_by(EnvVar.name).limit(limit).offset(offset)).all()
    return EnvVarList(items=[_out(e) for e in rows], total=total)


@router.post("", response_model=EnvVarOut, status_code=201)
def create_env_var(body: EnvVarCreate, who: Caller = Depends(caller), s: Session = Depends(db),
                   c: Components = Depends(components)) -> EnvVarOut:
    _check_value(body.value, c)
    vault = _vault_as(who, c)
    token = f"create:{uuid.uuid4()}"
    row = EnvVar(id=str(uuid.uuid4()), owner=who.user, name=body.name, description=body.description,
                 pending=token, pending_until=now() + _lease(c))
    _insert_claimed(s, who, row, vault, c)
    try:
        vault.write(row.id, body.value)
    except (VaultUnavailable, VaultDenied) as err:
        _vault_failed(c, who, "write", err)
        _release(c, row.id, token, drop=True)
        if isinstance(err, VaultUnanswered):  # the write may still land: undone until it is surely gone
            _undo_in_background(vault, row.id, c)
        _failed(c, who, "env_var.create", row.id, "vault_error", type(err).__name__)
        raise _vault_error(err, "the env var was not created") from None
    try:
        done = _rows(s, update(EnvVar).where(EnvVar.id == row.id, EnvVar.pending == token)
                     .values(pending=None, pending_until=None))
        if done:
            s.add(audit_row(who.user, "env_var.create", row.id, "ok", f"name={row.name}"))
        s.commit()
    except SQLAlchemyError as err:
        s.rollback()
        _undo(vault, row.id, c)
        _release(c, row.id, token, drop=True)
        raise _db_error(err, "the env var was not created") from None
    if not done:  # the row went while Vault was slow: its value must go too
        _undo(vault, row.id, c)
        raise HTTPException(503, "the env var was not created (it took too long); retry")
    return _out(row)


def _insert_claimed(s: Session, who: Caller, row: EnvVar, vault: UserVault, c: Components) -> None:
    """Inserts the new row, claimed (pending create), in a short transaction: the id and the unique name
    (per user) are taken before anything reaches Vault."""
    for attempt in (1, 2):
        s.add(row)
        try:
            s.commit()
            return
        except IntegrityError:
            s.rollback()
            if attempt == 2 or not _reclaim_name(s, who, row.name, vault, c):
                raise HTTPException(409, f"you already have an env var named {row.name}") from None
        except SQLAlchemyError as err:
            s.rollback()
            raise _db_error(err, "the env var was not created") from None


def _reclaim_name(s: Session, who: Caller, name: str, vault: UserVault, c: Components) -> bool:
    """Frees a name held by a create whose request died (its lease ran out); its value, if it reached
    Vault, is destroyed. True when the name may be free now."""
    try:
        stale = s.execute(select(EnvVar.id, EnvVar.pending).where(
            EnvVar.owner == who.user, EnvVar.name == name, EnvVar.pending.startswith("create:"),
            EnvVar.pending_until < now())).first()
        s.commit()
        if stale is None:
            return False
        gone = _rows(s, delete(EnvVar).where(EnvVar.id == stale.id, EnvVar.pending == stale.pending))
        s.commit()
    except SQLAlchemyError as err:
        s.rollback()
        raise _db_error(err, "the env var was not created") from None
    if gone:
        _undo_in_background(vault, stale.id, c)
    return True


@router.get("/{env_var_id}", response_model=EnvVarOut)
def get_env_var(env_var_id: str, who: Caller = Depends(caller), s: Session = Depends(db)) -> EnvVarOut:
    return _out(_owned(s, who, env_var_id))


@router.put("/{env_var_id}", response_model=EnvVarOut)
def update_env_var(env_var_id: str, body: EnvVarUpdate, who: Caller = Depends(caller), s: Session = Depends(db),
                   c: Components = Depends(components)) -> EnvVarOut:
    row = _owned(s, who, env_var_id)
    if body.description is None and body.value is None:
        raise field_error(("body",), "give a new description, a new value, or both")
    changes = {"updated_at": now()}
    if body.description is not None:
        changes["description"] = body.description
    if body.value is None:  # the row only: one conditional update, no Vault call, no claim to hold
        _change(s, who, row.id, changes, audit_row(who.user, "env_var.update", row.id, "ok", "description"))
        return _out(row, **changes)
    _check_value(body.value, c)
    vault = _vault_as(who, c)
    token = _claim(s, who, row.id, "update", c)
    previous, sent = None, False
    try:
        previous = vault.current_version(row.id)
        sent = True
        vault.write(row.id, body.value)  # a new KV version; the old ones stay until max_versions
    except (VaultUnavailable, VaultDenied) as err:
        _vault_failed(c, who, "write", err)
        _release(c, row.id, token)
        _failed(c, who, "env_var.update", row.id, "vault_error", type(err).__name__)
        # Without an answer the new version may have been stored: both values are the user's, no drift.
        unknown = sent and isinstance(err, VaultUnanswered)
        raise _vault_error(err, "the env var's value may or may not have changed: set it again" if unknown
                           else "the env var was not changed") from None
    try:
        done = _rows(s, update(EnvVar).where(EnvVar.id == row.id, EnvVar.pending == token)
                     .values(pending=None, pending_until=None, **changes))
        if done:
            s.add(audit_row(who.user, "env_var.update", row.id, "ok",
                            "value" if body.description is None else "value,description"))
        s.commit()
    except SQLAlchemyError as err:
        s.rollback()
        if previous is not None:  # the row keeps its claim until the lease ends; the old value comes back
            _compensate(lambda i: _restore(vault, i, previous), row.id, c)
        raise _db_error(err, "the env var was not changed") from None
    if not done:
        # This request's claim ran out and another change took the row over. If that was a delete, the
        # value written here may have landed after its destroy: it must go.
        if not _still_there(s, row.id):
            _undo_in_background(vault, row.id, c)
            raise HTTPException(404, "env var not found (it was deleted meanwhile)")
        raise HTTPException(409, "another change to this env var took over while Vault was slow; check it and retry")
    return _out(row, **changes)


@router.delete("/{env_var_id}", status_code=204)
def delete_env_var(env_var_id: str, who: Caller = Depends(caller), s: Session = Depends(db),
                   c: Components = Depends(components)) -> Response:
    row = _owned(s, who, env_var_id)
    vault = _vault_as(who, c)
    token = _claim(s, who, row.id, "delete", c)  # exactly one of concurrent deletes goes on; the others: 404
    try:
        vault.destroy(row.id)
    except (VaultUnavailable, VaultDenied) as err:
        _vault_failed(c, who, "delete", err)
        _release(c, row.id, token)
        _failed(c, who, "env_var.delete", row.id, "vault_error", type(err).__name__)
        unknown = isinstance(err, VaultUnanswered)
        raise _vault_error(err, "the env var may or may not have been deleted: delete it again" if unknown
                           else "the env var was not deleted") from None
    try:
        done = _rows(s, delete(EnvVar).where(EnvVar.id == row.id, EnvVar.pending == token))
        if done:
            s.add(audit_row(who.user, "env_var.delete", row.id, "ok"))
        s.commit()
    except SQLAlchemyError as err:
        s.rollback()
        # The value is gone as asked; the row stays claimed until the lease ends, then a delete finishes.
        raise _db_error(err, "the env var's value was deleted but its entry remains: delete it again") from None
    if not done:  # the claim ran out while Vault was slow and another change took the row over
        if not _still_there(s, row.id):
            raise HTTPException(404, "env var not found")
        raise HTTPException(409, "another change to this env var took over while Vault was slow; check it and retry")
    return Response(status_code=204)


def _vault_failed(c: Components, who: Caller, operation: str, err: Exception) -> None:
    c.metrics.vault_errors.labels(operation=operation).inc()
    if isinstance(err, VaultDenied):
        c.gateway.forget(who.token)  # a revoked or unknown session: the next request logs in afresh


def _restore(vault: UserVault, env_var_id: str, version: int) -> None:
    old = vault.read_version(env_var_id, version)
    if old is not None:
        vault.write(env_var_id, old)


def _compensate(action, env_var_id: str, c: Components) -> None:
    try:
        action(env_var_id)
    except Exception:  # noqa: BLE001 (reported by the drift check)
        c.metrics.vault_errors.labels(operation="compensate").inc()


def _undo(vault: UserVault, env_var_id: str, c: Components) -> None:
    """Destroys the value of a create that did not happen: at once, or in the background if Vault fails."""
    try:
        vault.destroy(env_var_id)
    except (VaultUnavailable, VaultDenied):
        _undo_in_background(vault, env_var_id, c)


def _undo_in_background(vault: UserVault, env_var_id: str, c: Components) -> None:
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
