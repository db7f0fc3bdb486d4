"""Dynamic env vars: a user declares a secrets engine role and which fields of the credential it mints land
in which env var names; each job that selects one gets a credential minted for it alone at its start and
revoked at its end (service/executor/leases.py). Whether the user may use the role is Vault's decision,
asked as the user (sys/capabilities-self on <mount>/creds/<role>): when the dynamic env var is declared and
each time a job asks for it."""
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.auth import Caller
from service.components import Components
from service.db.audit import audit_failure, audit_row
from service.db.dynamic import DynamicEnvVar, ExecutionCredential
from service.schemas import DynamicEnvVarCreate, DynamicEnvVarList, DynamicEnvVarOut, ExecutionCredentialOut, as_utc
from service.vault import VaultDenied, VaultUnavailable

from . import errors
from .user_vault import user_vault, vault_error, vault_failed


def _out(r: DynamicEnvVar) -> DynamicEnvVarOut:
    return DynamicEnvVarOut(id=r.id, name=r.name, engine=r.engine, role=r.role, env=dict(r.env),
                            description=r.description, created_at=r.created_at)


def creds_path(c: Components, role: str) -> str:
    return f"{c.settings.database_mount}/creds/{role}"


def check_grant(c: Components, who: Caller, role: str, outcome: str) -> None:
    """Asks Vault, as the caller, whether they may mint `role`; RoleNotGranted (403) naming it if not."""
    vault = user_vault(c, who)
    try:
        caps = vault.capabilities(creds_path(c, role))
    except (VaultUnavailable, VaultDenied) as err:
        vault_failed(c, who, "capabilities", err)
        raise vault_error(err, outcome) from None
    if "read" not in caps and "root" not in caps:
        audit_failure(c.sessions, who.user, "dynamic_env_var.grant", role, "refused", f"role={role}")
        raise errors.RoleNotGranted(f"Vault does not grant you the database role {role} "
                                    f"(no read on {creds_path(c, role)}); {outcome}")


def create(s: Session, c: Components, who: Caller, body: DynamicEnvVarCreate) -> DynamicEnvVarOut:
    check_grant(c, who, body.role, "the dynamic env var was not created")
    row = DynamicEnvVar(owner=who.user, name=body.name, role=body.role, env=dict(body.env),
                        description=body.description)
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        s.rollback()
        raise errors.NameTaken(f"you already have a dynamic env var named {body.name}") from None
    s.add(audit_row(who.user, "dynamic_env_var.create", row.id, "ok",
                    f"name={body.name} role={body.role} env={','.join(sorted(body.env))}"))
    s.commit()
    return _out(row)


def list_mine(s: Session, who: Caller) -> DynamicEnvVarList:
    rows = s.scalars(select(DynamicEnvVar).where(DynamicEnvVar.owner == who.user).order_by(DynamicEnvVar.name)).all()
    return DynamicEnvVarList(items=[_out(r) for r in rows])


def _owned(s: Session, who: Caller, dynamic_id: str) -> DynamicEnvVar:
    row = s.get(DynamicEnvVar, dynamic_id)
    if row is None or row.owner != who.user:
        raise errors.NotFound("dynamic env var not found")
    return row


def get(s: Session, who: Caller, dynamic_id: str) -> DynamicEnvVarOut:
    return _out(_owned(s, who, dynamic_id))


def delete(s: Session, who: Caller, dynamic_id: str) -> None:
    row = _owned(s, who, dynamic_id)
    s.delete(row)
    s.add(audit_row(who.user, "dynamic_env_var.delete", dynamic_id, "ok", f"name={row.name}"))
    s.commit()


def selected(s: Session, c: Components, who: Caller, ids: Sequence[str], taken: set[str],
             outcome: str) -> list[DynamicEnvVar]:
    """The caller's dynamic env vars among `ids`, each role granted by Vault now, no env var name given twice
    (`taken`: the stored env vars' names). NotFound, RoleNotGranted or InvalidField otherwise."""
    if not ids:
        return []
    rows = {r.id: r for r in s.scalars(select(DynamicEnvVar).where(DynamicEnvVar.id.in_(list(ids)),
                                                                   DynamicEnvVar.owner == who.user)).all()}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise errors.NotFound(f"dynamic env var not found: {missing[0]}")
    names = set(taken)
    for i in ids:
        clash = sorted(set(rows[i].env) & names)
        if clash:
            raise errors.InvalidField("dynamic_env_var_ids", f"env var {clash[0]} would be given twice "
                                      f"(by dynamic env var {rows[i].name})")
        names |= set(rows[i].env)
    s.commit()  # no transaction stays open across the Vault calls
    for role in sorted({rows[i].role for i in ids}):
        check_grant(c, who, role, "the job was not started")
    return [rows[i] for i in ids]


def links(execution_id: str, rows: Sequence[DynamicEnvVar]) -> list[ExecutionCredential]:
    return [ExecutionCredential(execution_id=execution_id, dynamic_env_var_id=r.id, name=r.name, role=r.role,
                                env_names=sorted(r.env)) for r in rows]


def credentials_of(s: Session, execution_id: str) -> list[ExecutionCredentialOut]:
    rows = s.scalars(select(ExecutionCredential).where(ExecutionCredential.execution_id == execution_id)
                     .order_by(ExecutionCredential.name)).all()
    return [ExecutionCredentialOut(
        dynamic_env_var_id=r.dynamic_env_var_id, name=r.name, role=r.role, env_names=list(r.env_names),
        lease_id=r.lease_id, token_accessor=r.token_accessor, ttl_seconds=r.ttl_seconds,
        issued_at=as_utc(r.issued_at), revoked_at=as_utc(r.revoked_at), revoke_error=r.revoke_error)
        for r in rows]


def dynamic_ids_of(s: Session, execution_id: str) -> list[str]:
    return list(s.scalars(select(ExecutionCredential.dynamic_env_var_id)
                          .where(ExecutionCredential.execution_id == execution_id)
                          .order_by(ExecutionCredential.name)).all())
