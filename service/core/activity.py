"""The caller's own activity: their audit rows, newest first, with the env vars they are about (named as
they are now, or as they were created when they are gone) and the env vars each job was given. Another
user's rows are never read; no row holds a value."""
import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.auth import Caller
from service.db import AuditEvent, EnvVar, Execution, ExecutionEnvVar
from service.schemas import ActivityEnvVar, ActivityEvent, ActivityList

_CREATED_NAME = re.compile(r"name=([A-Za-z_][A-Za-z0-9_]*)")


def list_activity(s: Session, who: Caller, limit: int, offset: int) -> ActivityList:
    mine = AuditEvent.actor == who.user
    total = s.execute(select(func.count()).select_from(AuditEvent).where(mine)).scalar_one()
    rows = s.scalars(select(AuditEvent).where(mine).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
                     .limit(limit).offset(offset)).all()
    env_var_ids = {r.target for r in rows if r.action.startswith("env_var.") and r.action != "env_var.import"}
    execution_ids = {r.target for r in rows if r.action.startswith("execution.")}
    used: dict[str, list[tuple[str, str]]] = {i: [] for i in execution_ids}
    if execution_ids:
        for execution_id, env_var_id, name in s.execute(
                select(ExecutionEnvVar.execution_id, ExecutionEnvVar.env_var_id, ExecutionEnvVar.name)
                .join(Execution, Execution.id == ExecutionEnvVar.execution_id)
                .where(Execution.owner == who.user, ExecutionEnvVar.execution_id.in_(sorted(execution_ids)))
                .order_by(ExecutionEnvVar.name)):
            used[execution_id].append((env_var_id, name))
            env_var_ids.add(env_var_id)
    names = _names(s, who, env_var_ids)
    s.commit()

    def env_var(env_var_id: str, as_used: str | None = None) -> ActivityEnvVar:
        current = names["now"].get(env_var_id)
        return ActivityEnvVar(id=env_var_id, name=current or as_used or names["created"].get(env_var_id),
                              exists=current is not None)

    items = []
    for r in rows:
        about = r.action.startswith("env_var.") and r.action != "env_var.import"
        job = r.action.startswith("execution.")
        items.append(ActivityEvent(
            id=r.id, at=r.at, action=r.action, outcome=r.outcome, detail=r.detail,
            env_var=env_var(r.target) if about else None, execution_id=r.target if job else None,
            env_vars=[env_var(i, n) for i, n in used.get(r.target, [])] if job else []))
    return ActivityList(items=items, total=total)


def _names(s: Session, who: Caller, env_var_ids: set[str]) -> dict[str, dict[str, str]]:
    """The caller's env vars' names now (those that exist) and at creation (from the create's audit row)."""
    if not env_var_ids:
        return {"now": {}, "created": {}}
    ids = sorted(env_var_ids)
    now = dict(s.execute(select(EnvVar.id, EnvVar.name).where(EnvVar.owner == who.user, EnvVar.visible(),
                                                              EnvVar.id.in_(ids))).all())
    created = {}
    for target, detail in s.execute(select(AuditEvent.target, AuditEvent.detail).where(
            AuditEvent.actor == who.user, AuditEvent.action == "env_var.create", AuditEvent.outcome == "ok",
            AuditEvent.target.in_([i for i in ids if i not in now]))):
        m = _CREATED_NAME.search(detail)
        if m:
            created[target] = m.group(1)
    return {"now": now, "created": created}
