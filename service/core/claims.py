"""Row claims: a change in flight on a row's Vault value holds the row's `pending` (a token) until
`pending_until`, a logical claim instead of a database lock held across the Vault call."""
import json
import logging
import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.auth import Caller
from service.components import Components
from service.db import AuditEvent, EnvVar, now

from . import errors
from .database import database_error, matched

log = logging.getLogger("service")
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
