"""The caller's env vars: list, get, create, update, delete. Values are write-only: nothing here returns,
logs or stores one outside Vault.

Consistency between a row and its Vault value, without ever holding a database lock or transaction
across a Vault call (a hung Vault must not block other users' writes):
1. a change claims its row (claims.py) in a short transaction of its own; a create inserts its row already
   claimed, and such a row does not exist for anyone until its value is in Vault;
2. then Vault, with no transaction open;
3. then the row is updated or deleted only where the claim is still this request's (WHERE pending =
   its token); when it is not, the Vault half is compensated (compensation.py).
A change finding the row claimed waits for nothing: Busy (retry), or NotFound when the row is being deleted.
A Vault write that got no answer may still be applied later: a create's is undone in the background.
"""
import datetime
import json
import uuid
from typing import Optional, Sequence

from sqlalchemy import DateTime, Integer, Row, String, bindparam, func, select, type_coerce
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from service.auth import Caller
from service.components import Components
from service.db import EnvVar, ExecutionEnvVar, embedded, now
from service.db.audit import audit_failure, audit_row, written
from service.schemas import EnvVarCreate, EnvVarList, EnvVarOut, EnvVarUpdate, iso_utc, sqlite_iso_utc
from service.vault import UserVault, VaultDenied, VaultUnanswered, VaultUnavailable

from . import errors
from .claims import TOOK_OVER, change, claim, env_var_out, finish, lease, owned, reclaim_name, release, still_there, taken_over
from .compensation import compensate, restore, undo, undo_in_background
from .errors import database_error
from .user_vault import user_vault, vault_error, vault_failed

# The newest execution that started with the outer query's env var: one backward step in the junction's
# (env_var_id, used_at, execution_id) index per listed row, however often the env var was used. Built
# once: a fresh alias per request made SQLAlchemy rebuild its columns and miss its statement cache.
_USE = aliased(ExecutionEnvVar, name="use")
_LAST_EXECUTION_ID = (select(_USE.execution_id)
                      .where(_USE.env_var_id == EnvVar.id, _USE.used_at.is_not(None))
                      .order_by(_USE.used_at.desc(), _USE.execution_id.desc()).limit(1)
                      .correlate(EnvVar).scalar_subquery())
_LAST = aliased(ExecutionEnvVar, name="last_use")
_LAST_JOIN = (_LAST.env_var_id == EnvVar.id) & (_LAST.execution_id == _LAST_EXECUTION_ID)  # its primary key


def _last_use(s: Session, env_var_id: str) -> dict:
    row = s.execute(select(_LAST.used_at, _LAST.execution_id).select_from(EnvVar)
                    .join(_LAST, _LAST_JOIN).where(EnvVar.id == env_var_id)).first()
    return {"last_used_at": row[0], "last_used_execution_id": row[1]} if row else {}


def _check_value(value: str, c: Components) -> None:
    if len(value.encode("utf-8")) > c.settings.value_max_bytes:
        raise errors.InvalidField("value", f"must be at most {c.settings.value_max_bytes} bytes (UTF-8)")
    if "\x00" in value:
        raise errors.InvalidField("value", "must not contain NUL characters (an environment cannot hold them)")


# A page's two statements, built once with parameters: a statement object memoises its cache key, and
# building and keying one per request (a join on a correlated subquery) was a fifth of a small page's time.
# `like` and `until` are NULL when not filtering.
_LIKE = bindparam("like", type_=String)
_UNTIL = bindparam("until", type_=DateTime(timezone=True))
_FILTER = ((EnvVar.owner == bindparam("owner", type_=String)) & EnvVar.visible()
           & (_LIKE.is_(None) | func.lower(EnvVar.name).like(_LIKE) | func.lower(EnvVar.description).like(_LIKE))
           & (_UNTIL.is_(None) | (EnvVar.expires_at <= _UNTIL)))
_COUNT = select(func.count()).select_from(EnvVar).where(_FILTER)


def _page_statement(times):
    created, updated, expires, used = times
    return (select(EnvVar.id, EnvVar.name, EnvVar.description, created, updated, expires, used, _LAST.execution_id)
            .outerjoin(_LAST, _LAST_JOIN).where(_FILTER).order_by(EnvVar.name)
            .limit(bindparam("limit", type_=Integer)).offset(bindparam("offset", type_=Integer)))


_TIMES = (EnvVar.created_at, EnvVar.updated_at, EnvVar.expires_at, _LAST.used_at)
_PAGE = _page_statement(_TIMES)
# The timestamps as the database returns them, before SQLAlchemy's conversion: SQLite's stored text
# (PostgreSQL's driver gives datetimes either way).
_PAGE_STORED_TIMES = _page_statement(tuple(type_coerce(t, String).label(t.key) for t in _TIMES))


def _page(s: Session, who: Caller, q: str, limit: int, offset: int, expiring_within_days: Optional[int] = None,
          stored_times: bool = False) -> tuple[Sequence[Row], int]:
    params = {"owner": who.user, "like": f"%{q.lower()}%" if q else None, "limit": limit, "offset": offset,
              # the expired ones included: they are the most urgent
              "until": None if expiring_within_days is None else now() + datetime.timedelta(days=expiring_within_days)}
    # Through Core on the session's connection, columns only: ORM objects or the ORM's row loading were
    # most of a large page's time (bench/). The last use comes in the same query (a join on a correlated
    # subquery), never a query per row.
    connection = s.connection()
    total = connection.execute(_COUNT, params).scalar_one()
    rows = connection.execute(_PAGE_STORED_TIMES if stored_times else _PAGE, params).all()
    return rows, total


def list_env_vars(s: Session, who: Caller, q: str, limit: int, offset: int,
                  expiring_within_days: Optional[int] = None) -> EnvVarList:
    """A page of the caller's env vars by name (`q`: a substring of the name or description;
    `expiring_within_days`: only those expiring within so many days, or expired) and how many in all."""
    rows, total = _page(s, who, q, limit, offset, expiring_within_days)
    return EnvVarList(total=total, items=[
        EnvVarOut(id=i, name=n, description=d, created_at=c, updated_at=u, expires_at=x, last_used_at=la,
                  last_used_execution_id=le) for i, n, d, c, u, x, la, le in rows])


def list_env_vars_json(s: Session, who: Caller, q: str, limit: int, offset: int,
                       expiring_within_days: Optional[int] = None) -> bytes:
    """The same page as list_env_vars, as the JSON of an EnvVarList, encoded straight from the rows: a
    model per row and its encoding were most of a 1,000-row page's time (bench/). SQLite's timestamps are
    re-encoded from their stored text, not parsed into datetimes and formatted again (3,000 a page)."""
    stored = embedded(s.get_bind())
    rows, total = _page(s, who, q, limit, offset, expiring_within_days, stored_times=stored)
    iso = sqlite_iso_utc if stored else iso_utc
    return json.dumps({"items": [{"id": i, "name": n, "description": d, "created_at": iso(c), "updated_at": iso(u),
                                  "expires_at": x and iso(x), "last_used_at": la and iso(la),
                                  "last_used_execution_id": le} for i, n, d, c, u, x, la, le in rows],
                       "total": total}, ensure_ascii=False, separators=(",", ":")).encode()


def get_env_var(s: Session, who: Caller, env_var_id: str) -> EnvVarOut:
    row = owned(s, who, env_var_id)
    return env_var_out(row, **_last_use(s, row.id))


def create_env_var(s: Session, c: Components, who: Caller, body: EnvVarCreate) -> EnvVarOut:
    _check_value(body.value, c)
    vault = user_vault(c, who)
    token = f"create:{uuid.uuid4()}"
    row = EnvVar(id=str(uuid.uuid4()), owner=who.user, name=body.name, description=body.description,
                 expires_at=body.expires_at, pending=token, pending_until=now() + lease(c))
    _insert_claimed(s, who, row, vault, c)
    try:
        version = vault.write(row.id, body.value)
    except (VaultUnavailable, VaultDenied) as err:
        vault_failed(c, who, "write", err)
        release(c, row.id, token, drop=True)
        if isinstance(err, VaultUnanswered):  # the write may still land: undone until it is surely gone
            undo_in_background(vault, row.id, c)
        audit_failure(c.sessions, who.user, "env_var.create", row.id, "vault_error", type(err).__name__)
        raise vault_error(err, "the env var was not created") from None
    try:
        done = finish(s, row.id, token, audit_row(who.user, "env_var.create", row.id, "ok",
                                                  f"name={row.name} {written(version)}"))
    except SQLAlchemyError as err:
        undo(vault, row.id, c)
        release(c, row.id, token, drop=True)
        raise database_error(err, "the env var was not created") from None
    if not done:  # the row went while Vault was slow: its value must go too
        undo(vault, row.id, c)
        raise errors.TimedOut("the env var was not created (it took too long); retry")
    return env_var_out(row)


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
            if attempt == 2 or not reclaim_name(s, who, row.name, vault, c):
                raise errors.NameTaken(f"you already have an env var named {row.name}") from None
        except SQLAlchemyError as err:
            s.rollback()
            raise database_error(err, "the env var was not created") from None


def update_env_var(s: Session, c: Components, who: Caller, env_var_id: str, body: EnvVarUpdate) -> EnvVarOut:
    row = owned(s, who, env_var_id)
    new_expiry = "expires_at" in body.model_fields_set  # null included: it clears the expiry
    if body.description is None and body.value is None and not new_expiry:
        raise errors.InvalidField(None, "give a new description, a new value, a new expires_at, or some of them")
    changes: dict[str, object] = {"updated_at": now()}
    if body.description is not None:
        changes["description"] = body.description
    if new_expiry:
        changes["expires_at"] = body.expires_at
    changed = ",".join(f for f, given in (("value", body.value is not None),
                                          ("description", body.description is not None),
                                          ("expires_at", new_expiry)) if given)
    if body.value is None:  # the row only: one conditional update, no Vault call, no claim to hold
        change(s, who, row.id, changes, audit_row(who.user, "env_var.update", row.id, "ok", changed))
        c.webhooks.emit("env_var.changed", who.user, {"id": row.id, "name": row.name, "changed": changed.split(",")})
        return env_var_out(row, **changes, **_last_use(s, row.id))
    _check_value(body.value, c)
    vault = user_vault(c, who)
    token = claim(s, who, row.id, "update", c)
    previous, sent = None, False
    try:
        previous = vault.current_version(row.id)
        sent = True
        version = vault.write(row.id, body.value)  # a new KV version; the old ones stay until max_versions
    except (VaultUnavailable, VaultDenied) as err:
        vault_failed(c, who, "write", err)
        release(c, row.id, token)
        audit_failure(c.sessions, who.user, "env_var.update", row.id, "vault_error", type(err).__name__)
        # Without an answer the new version may have been stored: both values are the user's, no drift.
        unknown = sent and isinstance(err, VaultUnanswered)
        raise vault_error(err, "the env var's value may or may not have changed: set it again" if unknown
                          else "the env var was not changed") from None
    try:
        done = finish(s, row.id, token, audit_row(who.user, "env_var.update", row.id, "ok", f"{changed} {written(version)}"),
                      changes)
    except SQLAlchemyError as err:
        if previous is not None:  # the row keeps its claim until the lease ends; the old value comes back
            compensate(lambda i: restore(c, who, vault, i, previous), row.id, c)
        raise database_error(err, "the env var was not changed") from None
    if not done:
        raise taken_over(s, vault, row.id, c)
    c.webhooks.emit("env_var.changed", who.user, {"id": row.id, "name": row.name, "changed": changed.split(","),
                                                  "version": version})
    return env_var_out(row, **changes, **_last_use(s, row.id))


def delete_env_var(s: Session, c: Components, who: Caller, env_var_id: str) -> None:
    row = owned(s, who, env_var_id)
    vault = user_vault(c, who)
    token = claim(s, who, row.id, "delete", c)  # exactly one of concurrent deletes goes on; the others: NotFound
    try:
        vault.destroy(row.id)
    except (VaultUnavailable, VaultDenied) as err:
        vault_failed(c, who, "delete", err)
        release(c, row.id, token)
        audit_failure(c.sessions, who.user, "env_var.delete", row.id, "vault_error", type(err).__name__)
        unknown = isinstance(err, VaultUnanswered)
        raise vault_error(err, "the env var may or may not have been deleted: delete it again" if unknown
                          else "the env var was not deleted") from None
    try:
        done = finish(s, row.id, token, audit_row(who.user, "env_var.delete", row.id, "ok"), drop=True)
    except SQLAlchemyError as err:
        # The value is gone as asked; the row stays claimed until the lease ends, then a delete finishes.
        raise database_error(err, "the env var's value was deleted but its entry remains: delete it again") from None
    if not done:  # the claim ran out while Vault was slow and another change took the row over
        if not still_there(s, row.id):
            raise errors.NotFound("env var not found")
        raise errors.Busy(TOOK_OVER)
    c.webhooks.emit("env_var.deleted", who.user, {"id": row.id, "name": row.name})
