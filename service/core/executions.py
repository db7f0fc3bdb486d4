"""Executions: a job started with some of the caller's env vars (the executor reads their values from
Vault and runs it), followed and cancelled by its owner only."""
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth import Caller
from service.components import Components
from service.db import EnvVar, Execution, ExecutionEnvVar
from service.schemas import ExecutionCreate, ExecutionOut

from . import errors
from .audit import audit, audit_row


def _out(s: Session, e: Execution) -> ExecutionOut:
    names = s.scalars(select(ExecutionEnvVar.name).where(ExecutionEnvVar.execution_id == e.id)
                      .order_by(ExecutionEnvVar.name)).all()
    return ExecutionOut(id=e.id, status=e.status, command=e.command, env_var_names=list(names),
                        exit_code=e.exit_code, output=e.output, error=e.error, created_at=e.created_at,
                        started_at=e.started_at, finished_at=e.finished_at)


def _owned(s: Session, who: Caller, execution_id: str) -> Execution:
    e = s.get(Execution, execution_id)
    if e is None or e.owner != who.user:
        raise errors.NotFound("execution not found")
    return e


def start_execution(s: Session, c: Components, who: Caller, body: ExecutionCreate) -> ExecutionOut:
    timeout = body.timeout_seconds or c.settings.default_timeout_seconds
    if timeout > c.settings.max_timeout_seconds:
        raise errors.InvalidField("timeout_seconds", f"must be at most {c.settings.max_timeout_seconds}")
    rows = s.scalars(select(EnvVar).where(EnvVar.id.in_(body.env_var_ids), EnvVar.owner == who.user,
                                          EnvVar.visible())).all()  # not a row still being created
    found = {r.id: r for r in rows}
    missing = [i for i in body.env_var_ids if i not in found]
    if missing:  # unknown and someone else's look the same
        raise errors.NotFound(f"env var not found: {missing[0]}")
    execution = Execution(owner=who.user, command=body.command, status="queued", timeout_seconds=timeout)
    s.add(execution)
    s.flush()
    for r in rows:
        s.add(ExecutionEnvVar(execution_id=execution.id, env_var_id=r.id, name=r.name))
    s.add(audit_row(who.user, "execution.start", execution.id, "queued",
                    "env_vars=" + ",".join(sorted(r.name for r in rows))))
    s.commit()
    c.executor.submit(execution.id)
    return _out(s, execution)


def get_execution(s: Session, who: Caller, execution_id: str) -> ExecutionOut:
    return _out(s, _owned(s, who, execution_id))


def cancel_execution(s: Session, c: Components, who: Caller, execution_id: str) -> ExecutionOut:
    e = _owned(s, who, execution_id)
    if e.status in ("queued", "running"):
        c.executor.cancel(e.id)
        audit(c.sessions, who.user, "execution.cancel", e.id, "requested")
    return _out(s, e)


def recent_executions(s: Session, who: Caller, limit: int) -> Sequence[Execution]:
    """The caller's latest executions, newest first."""
    return s.scalars(select(Execution).where(Execution.owner == who.user)
                     .order_by(Execution.created_at.desc()).limit(limit)).all()
