"""/api/v2/user/env-vars: the caller's env vars. Values are write-only: no route ever returns one.

Consistency: the database row and the Vault secret are written so that a failure of either half leaves
neither a value without its row nor a row pointing at a lost value: the row is committed only after
Vault accepted the value, and a database failure after a Vault write is compensated in Vault.
"""
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from service.auth import Caller
from service.db import EnvVar, now
from service.schemas import EnvVarCreate, EnvVarList, EnvVarOut, EnvVarUpdate
from service.vault_access import UserVault, VaultDenied, VaultUnavailable

from .deps import Components, audit, audit_row, caller, components, db, field_error

router = APIRouter(prefix="/api/v2/user/env-vars", tags=["env-vars"])


def _out(e: EnvVar) -> EnvVarOut:
    return EnvVarOut(id=e.id, name=e.name, description=e.description, created_at=e.created_at,
                     updated_at=e.updated_at)


def _check_value(value: str, c: Components) -> None:
    if len(value.encode("utf-8")) > c.settings.value_max_bytes:
        raise field_error(("body", "value"), f"must be at most {c.settings.value_max_bytes} bytes (UTF-8)")
    if "\x00" in value:
        raise field_error(("body", "value"), "must not contain NUL characters (an environment cannot hold them)")


def _vault_as(who: Caller, c: Components) -> UserVault:
    try:
        return c.gateway.as_user(who.token, who.user)
    except VaultUnavailable:
        c.metrics.vault_errors.labels(operation="login").inc()
        raise HTTPException(503, "Vault is unavailable; nothing was changed") from None
    except VaultDenied:
        raise HTTPException(403, "Vault refused your token") from None


def _owned(s: Session, who: Caller, env_var_id: str) -> EnvVar:
    e = s.get(EnvVar, env_var_id)
    if e is None or e.owner != who.user:  # someone else's id looks exactly like an unknown one
        raise HTTPException(404, "env var not found")
    return e


@router.get("", response_model=EnvVarList)
def list_env_vars(q: str = Query("", max_length=128, description="substring of the name or description"),
                  limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10_000_000),
                  who: Caller = Depends(caller), s: Session = Depends(db)) -> EnvVarList:
    where = [EnvVar.owner == who.user]
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
    row = EnvVar(owner=who.user, name=body.name, description=body.description)
    s.add(row)
    try:
        s.flush()  # the id, and the unique name (per user), before anything reaches Vault
    except IntegrityError:
        s.rollback()
        raise HTTPException(409, f"you already have an env var named {body.name}") from None
    try:
        vault = _vault_as(who, c)
    except HTTPException:
        s.rollback()
        raise
    try:
        vault.write(row.id, body.value)
    except (VaultUnavailable, VaultDenied) as err:
        s.rollback()
        _vault_failed(c, who, "write", err)
        audit(c.sessions, who.user, "env_var.create", row.id, "vault_error", type(err).__name__)
        raise HTTPException(503, "Vault is unavailable; the env var was not created") from None
    s.add(audit_row(who.user, "env_var.create", row.id, "ok", f"name={row.name}"))
    try:
        s.commit()
    except SQLAlchemyError:
        s.rollback()
        _compensate(vault.destroy, row.id, c)
        raise HTTPException(503, "the database is unavailable; the env var was not created") from None
    return _out(row)


@router.get("/{env_var_id}", response_model=EnvVarOut)
def get_env_var(env_var_id: str, who: Caller = Depends(caller), s: Session = Depends(db)) -> EnvVarOut:
    return _out(_owned(s, who, env_var_id))


@router.put("/{env_var_id}", response_model=EnvVarOut)
def update_env_var(env_var_id: str, body: EnvVarUpdate, who: Caller = Depends(caller), s: Session = Depends(db),
                   c: Components = Depends(components)) -> EnvVarOut:
    row = _owned(s, who, env_var_id)
    if body.description is None and body.value is None:
        raise field_error(("body",), "give a new description, a new value, or both")
    if body.description is not None:
        row.description = body.description
    row.updated_at = now()
    previous = None
    vault = None
    if body.value is not None:
        _check_value(body.value, c)
        vault = _vault_as(who, c)
        try:
            previous = vault.current_version(row.id)
            vault.write(row.id, body.value)  # a new KV version; the old ones stay until max_versions
        except (VaultUnavailable, VaultDenied) as err:
            s.rollback()
            _vault_failed(c, who, "write", err)
            audit(c.sessions, who.user, "env_var.update", row.id, "vault_error")
            raise HTTPException(503, "Vault is unavailable; the env var was not changed") from None
    s.add(audit_row(who.user, "env_var.update", row.id, "ok", "value" if body.value is not None else "description"))
    try:
        s.commit()
    except SQLAlchemyError:
        s.rollback()
        if vault is not None and previous is not None:
            _compensate(lambda i: vault.write(i, vault.read_version(i, previous)), row.id, c)
        raise HTTPException(503, "the database is unavailable; the env var was not changed") from None
    return _out(row)


@router.delete("/{env_var_id}", status_code=204)
def delete_env_var(env_var_id: str, who: Caller = Depends(caller), s: Session = Depends(db),
                   c: Components = Depends(components)) -> Response:
    row = _owned(s, who, env_var_id)
    vault = _vault_as(who, c)
    s.delete(row)
    try:
        s.flush()
        vault.destroy(row.id)
    except (VaultUnavailable, VaultDenied) as err:
        s.rollback()
        _vault_failed(c, who, "delete", err)
        audit(c.sessions, who.user, "env_var.delete", env_var_id, "vault_error")
        raise HTTPException(503, "Vault is unavailable; the env var was not deleted") from None
    s.add(audit_row(who.user, "env_var.delete", env_var_id, "ok"))
    try:
        s.commit()
    except SQLAlchemyError:
        s.rollback()
        # The value is gone as asked; the row is left and `python -m service check` reports it.
        raise HTTPException(503, "the database is unavailable; the env var's value was deleted but its entry "
                                 "remains: delete it again") from None
    return Response(status_code=204)


def _vault_failed(c: Components, who: Caller, operation: str, err: Exception) -> None:
    c.metrics.vault_errors.labels(operation=operation).inc()
    if isinstance(err, VaultDenied):
        c.gateway.forget(who.token)  # a revoked or unknown session: the next request logs in afresh


def _compensate(action, env_var_id: str, c: Components) -> None:
    try:
        action(env_var_id)
    except Exception:  # noqa: BLE001 (reported by the drift check)
        c.metrics.vault_errors.labels(operation="compensate").inc()
