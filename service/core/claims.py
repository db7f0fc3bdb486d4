"""Row claims: a change in flight on a row's Vault value holds the row's `pending` (a token) until
`pending_until`, a logical claim instead of a database lock held across the Vault call. With them, the
steps on the caller's env var rows that the operations share (create, update, delete, rollback, rotation,
import): the row owned, its answer, a name freed from a create that died."""
import json
import logging
import uuid
from datetime import timedelta
from typing import Optional

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.auth import Caller
from service.components import Components
from service.db import AuditEvent, EnvVar, matched, now
from service.schemas import EnvVarOut
from service.vault import UserVault

from . import errors
from .compensation import undo_in_background
from .errors import database_error

log = logging.getLogger("service")
TOOK_OVER = "another change to this env var took over while Vault was slow; check it and retry"
BUSY = "another change to this env var is in progress; retry"


def lease(c: Components) -> timedelta:
    # Outlives the claim's own Vault calls (two at most, each bounded by the timeout); a claim whose
    # request died runs out and the next change takes it over.
    return timedelta(seconds=2 * c.settings.vault_timeout_seconds + 30)


def change(s: Session, who: Caller, env_var_id: str, values: dict, ok: AuditEvent | None = None,
           deleting: bool = False) -> None:
    """One conditional UPDATE of the caller's row (a claim, or a change needing no Vault call, with its
    audit row `ok`) in a short transaction of its own, only where no live claim holds the row."""
    t = now()
    free = EnvVar.pending.is_(None) | (EnvVar.pending_until < t)
    try:
        changed = matched(s, update(EnvVar).where(EnvVar.id == env_var_id, EnvVar.owner == who.user,
                                                  EnvVar.visible(), free).values(**values))
        if changed and ok is not None:
            s.add(ok)
        holder = None if changed else s.execute(
            select(EnvVar.pending).where(EnvVar.id == env_var_id, EnvVar.owner == who.user)).first()
        s.commit()
    except SQLAlchemyError as err:
        s.rollback()
        raise database_error(err, "nothing was changed") from None
    if not changed:
        held_by = str(holder.pending) if holder else ""
        # Gone, or not there yet; a delete meeting another delete answers as if that one had finished.
        if holder is None or held_by.startswith("create:") or (deleting and held_by.startswith("delete:")):
            raise errors.NotFound("env var not found")
        raise errors.Busy(BUSY)


def claim(s: Session, who: Caller, env_var_id: str, kind: str, c: Components) -> str:
    token = f"{kind}:{uuid.uuid4()}"
    change(s, who, env_var_id, {"pending": token, "pending_until": now() + lease(c)}, deleting=kind == "delete")
    return token


def finish(s: Session, env_var_id: str, token: str, ok: AuditEvent, changes: Optional[dict] = None,
           drop: bool = False) -> bool:
    """Ends this request's claim (`drop`: deletes the row) with the row's `changes` and the audit row `ok`,
    in one transaction. False: the claim was no longer this request's (its lease ran out while Vault was
    slow and another change took the row over). A database failure is rolled back and raised: the caller
    undoes its Vault half."""
    statement = delete(EnvVar) if drop else update(EnvVar).values(pending=None, pending_until=None, **(changes or {}))
    try:
        done = matched(s, statement.where(EnvVar.id == env_var_id, EnvVar.pending == token))
        if done:
            s.add(ok)
        s.commit()
    except SQLAlchemyError:
        s.rollback()
        raise
    return bool(done)


def taken_over(s: Session, vault: UserVault, env_var_id: str, c: Components) -> errors.DomainError:
    """What a change whose claim another change took over is told. If that was a delete, the value written
    here may have landed after its destroy: it must go."""
    if not still_there(s, env_var_id):
        undo_in_background(vault, env_var_id, c)
        return errors.NotFound("env var not found (it was deleted meanwhile)")
    return errors.Busy(TOOK_OVER)


def release(c: Components, env_var_id: str, token: str, drop: bool = False) -> None:
    """Ends a failed change's claim (`drop`: deletes the row a failed create inserted) in a transaction of
    its own. If the database fails too, the claim's lease runs out instead."""
    statement = delete(EnvVar) if drop else update(EnvVar).values(pending=None, pending_until=None)
    try:
        with c.sessions() as s, s.begin():
            matched(s, statement.where(EnvVar.id == env_var_id, EnvVar.pending == token))
    except SQLAlchemyError as err:
        log.warning(json.dumps({"event": "claim_not_released", "env_var_id": env_var_id,
                                "error": type(err).__name__}))


def still_there(s: Session, env_var_id: str) -> bool:
    """Whether the row exists at all, after a claim was lost to another change."""
    try:
        return bool(s.scalar(select(func.count()).select_from(EnvVar).where(EnvVar.id == env_var_id)))
    finally:
        s.rollback()


def owned(s: Session, who: Caller, env_var_id: str) -> EnvVar:
    e = s.get(EnvVar, env_var_id)
    # Someone else's id looks exactly like an unknown one; a row still being created does not exist yet.
    if e is None or e.owner != who.user or e.being_created:
        raise errors.NotFound("env var not found")
    s.commit()  # ends the read: no transaction stays open across the Vault calls that follow
    return e


def env_var_out(e: EnvVar, **changed) -> EnvVarOut:
    fields = dict(id=e.id, name=e.name, description=e.description, created_at=e.created_at, updated_at=e.updated_at,
                  expires_at=e.expires_at)
    return EnvVarOut(**{**fields, **changed})


def reclaim_name(s: Session, who: Caller, name: str, vault: UserVault, c: Components) -> bool:
    """Frees a name held by a create whose request died (its lease ran out); its value, if it reached
    Vault, is destroyed. True when the name may be free now."""
    try:
        stale = s.execute(select(EnvVar.id, EnvVar.pending).where(
            EnvVar.owner == who.user, EnvVar.name == name, EnvVar.pending.startswith("create:"),
            EnvVar.pending_until < now())).first()
        s.commit()
        if stale is None:
            return False
        gone = matched(s, delete(EnvVar).where(EnvVar.id == stale.id, EnvVar.pending == stale.pending))
        s.commit()
    except SQLAlchemyError as err:
        s.rollback()
        raise database_error(err, "the env var was not created") from None
    if gone:
        undo_in_background(vault, stale.id, c)
    return True
