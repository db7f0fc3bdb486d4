"""An env var's versions and rollback. KV v2 keeps the newest versions of each value (the mount's
max_versions: the stack's kvMaxVersions); this lists them and makes an older one's value the newest
version again, as the user (a JWT login: Vault's policy and audit log apply). A value is read and
written inside this process only: never returned, logged or stored.

Who wrote a version: KV's metadata does not say, and its custom_metadata belongs to the whole secret,
not to a version, so it cannot either. Every write's audit row names the KV version it made
("version=N" in its detail, in the same transaction as the row's change), and the versions are matched
to those rows. A version with no such row was written outside the service (or by a change whose
database half failed and was undone).
"""
import re
from typing import Optional

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.auth import Caller
from service.components import Components
from service.db import AuditEvent, now
from service.db.audit import audit_failure, audit_row, written
from service.schemas import EnvVarRolledBack, EnvVarVersion, EnvVarVersions
from service.vault import KvHistory, UserVault, VaultDenied, VaultUnanswered, VaultUnavailable

from . import errors
from .claims import claim, env_var_out, finish, owned, release, taken_over
from .compensation import compensate, restore
from .errors import database_error
from .user_vault import user_vault, vault_error, vault_failed

# The audit actions whose rows name the KV version they wrote, and what each is called in a version.
WRITES = {"env_var.create": "create", "env_var.update": "update", "env_var.rollback": "rollback",
          "env_var.restore": "restore"}
_FIELD = re.compile(r"(?:^| )(version|from|for)=(\S+)")
Author = tuple[Optional[str], Optional[str], Optional[str], Optional[int]]  # author, user, action, copied from


def _authors(s: Session, env_var_id: str) -> dict[int, Author]:
    """version -> (author, user, action, rolled back from), from the audit rows of the env var's writes."""
    try:
        rows = s.execute(select(AuditEvent.actor, AuditEvent.action, AuditEvent.detail).where(
            AuditEvent.target == env_var_id, AuditEvent.outcome == "ok", AuditEvent.action.in_(WRITES))
            .order_by(AuditEvent.id)).all()
        s.commit()
    except SQLAlchemyError as err:
        s.rollback()
        raise database_error(err) from None
    out: dict[int, Author] = {}
    for actor, action, detail in rows:
        fields = dict(_FIELD.findall(detail or ""))
        if not fields.get("version", "").isdigit():
            continue  # a description-only update wrote no version
        by_service = action == "env_var.restore"
        source = fields.get("from", "")
        out[int(fields["version"])] = ("service" if by_service else "user",
                                       fields.get("for", "") if by_service else actor,
                                       WRITES[action], int(source) if source.isdigit() else None)
    return out


def _history(c: Components, who: Caller, vault: UserVault, env_var_id: str) -> Optional[KvHistory]:
    try:
        return vault.history(env_var_id)
    except (VaultUnavailable, VaultDenied) as err:
        vault_failed(c, who, "read_metadata", err)
        raise vault_error(err, "its versions cannot be listed now") from None


def list_versions(s: Session, c: Components, who: Caller, env_var_id: str) -> EnvVarVersions:
    row = owned(s, who, env_var_id)
    history = _history(c, who, user_vault(c, who), row.id)
    if history is None:
        return EnvVarVersions(env_var_id=row.id, current_version=None, oldest_version=None, items=[])
    authors = _authors(s, row.id)
    items = []
    for v in history.versions:
        author, user, action, source = authors.get(v.version, (None, None, None, None))
        current = v.version == history.current
        items.append(EnvVarVersion.model_validate(dict(  # validated: the author and action literals
            version=v.version, created_at=v.created, current=current, deleted=v.deleted, destroyed=v.destroyed,
            author=author, user=user or None, action=action, rolled_back_from=source,
            restorable=not (current or v.deleted or v.destroyed))))
    return EnvVarVersions(env_var_id=row.id, current_version=history.current, oldest_version=history.oldest,
                          items=items)


def _check_restorable(history: Optional[KvHistory], version: int) -> None:
    """Refuses, naming the version, one whose value cannot be made current."""
    if history is None:
        raise errors.InvalidField("version", "this env var has no value in Vault to roll back")
    kept = {v.version: v for v in history.versions}
    if version > history.current:
        raise errors.InvalidField("version", f"version {version} does not exist: the newest is {history.current}")
    if version == history.current:
        raise errors.InvalidField("version", f"version {version} is already the current value")
    if version not in kept:
        raise errors.InvalidField("version", f"version {version} is no longer kept: Vault keeps the newest "
                                             f"versions only (kvMaxVersions); the oldest kept is {history.oldest}")
    if kept[version].destroyed:
        raise errors.InvalidField("version", f"version {version} was destroyed: its value is gone")
    if kept[version].deleted:
        raise errors.InvalidField("version", f"version {version} was deleted in Vault: its value cannot be read")


def rollback(s: Session, c: Components, who: Caller, env_var_id: str, version: int) -> EnvVarRolledBack:
    """The value of `version` becomes the newest version. The row is claimed as an update is (claims.py),
    so no other change interleaves between reading the history and writing."""
    row = owned(s, who, env_var_id)
    vault = user_vault(c, who)
    token = claim(s, who, row.id, "update", c)
    history, sent = None, False
    try:
        history = vault.history(row.id)
        _check_restorable(history, version)
        value = vault.read_version(row.id, version)
        if value is None:  # deleted or destroyed since the history was read (outside the service)
            raise errors.InvalidField("version", f"version {version} is no longer readable: deleted or destroyed")
        sent = True
        new = vault.write(row.id, value)
        del value
    except errors.InvalidField:
        release(c, row.id, token)
        audit_failure(c.sessions, who.user, "env_var.rollback", row.id, "refused", f"to={version}")
        raise
    except (VaultUnavailable, VaultDenied) as err:
        vault_failed(c, who, "write" if sent else "read", err)
        release(c, row.id, token)
        audit_failure(c.sessions, who.user, "env_var.rollback", row.id, "vault_error", type(err).__name__)
        unknown = sent and isinstance(err, VaultUnanswered)
        raise vault_error(err, "the rollback may or may not have happened: list the versions" if unknown
                          else "nothing was changed") from None
    assert history is not None  # _check_restorable refused otherwise
    changes = {"updated_at": now()}
    try:
        done = finish(s, row.id, token, audit_row(who.user, "env_var.rollback", row.id, "ok", written(new, version)),
                      changes)
    except SQLAlchemyError as err:
        current = history.current
        compensate(lambda i: restore(c, who, vault, i, current), row.id, c)
        raise database_error(err, "nothing was changed") from None
    if not done:  # as in an update
        raise taken_over(s, vault, row.id, c)
    c.webhooks.emit("env_var.rolled_back", who.user, {"id": row.id, "name": row.name, "version": new,
                                                      "rolled_back_from": version})
    return EnvVarRolledBack(env_var=env_var_out(row, **changes), version=new, rolled_back_from=version)
