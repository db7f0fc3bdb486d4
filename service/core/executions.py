"""Executions: a job started with some of the caller's env vars (the executor reads their values from
Vault and runs it), followed and cancelled by its owner only."""
from typing import Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.auth import Caller
from service.components import Components
from service.db import EnvVar, Execution, ExecutionEnvVar
from service.executor.runner import ACTIVE
from service.schemas import ExecutionCreate, ExecutionList, ExecutionOut, ExecutionSummary

from . import errors
from .audit import audit, audit_row


def _summary(e: Execution, env_var_names: list[str]) -> dict:
    return dict(id=e.id, status=e.status, command=e.command, env_var_names=env_var_names, exit_code=e.exit_code,
                error=e.error, created_at=e.created_at, started_at=e.started_at, finished_at=e.finished_at)


def _out(s: Session, e: Execution) -> ExecutionOut:
    rows = s.execute(select(ExecutionEnvVar.name, ExecutionEnvVar.redacted)
                     .where(ExecutionEnvVar.execution_id == e.id).order_by(ExecutionEnvVar.name)).all()
    return ExecutionOut(**_summary(e, [name for name, _ in rows]), output=e.output,
                        unredacted_env_vars=[name for name, redacted in rows if not redacted])


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
    # With a free worker here, the row is inserted claimed by this replica and starts at once; otherwise
    # it is queued for the first replica with a free worker.
    reservation = c.executor.reserve()
    try:
        execution = Execution(owner=who.user, command=body.command, status="queued", timeout_seconds=timeout,
                              claimed_by=reservation and reservation.replica,
                              lease_until=reservation and reservation.lease_until)
        s.add(execution)
        s.flush()
        for r in rows:
            s.add(ExecutionEnvVar(execution_id=execution.id, env_var_id=r.id, name=r.name))
        s.add(audit_row(who.user, "execution.start", execution.id, "queued",
                        "env_vars=" + ",".join(sorted(r.name for r in rows))))
        s.commit()
    except BaseException:
        c.executor.unreserve(reservation)
        raise
    c.executor.created(execution.id, reservation)
    return _out(s, execution)


def get_execution(s: Session, who: Caller, execution_id: str) -> ExecutionOut:
    return _out(s, _owned(s, who, execution_id))


def cancel_execution(s: Session, c: Components, who: Caller, execution_id: str) -> ExecutionOut:
    e = _owned(s, who, execution_id)
    if e.status in ACTIVE:
        c.executor.cancel(e.id)  # whichever replica runs it
        audit(c.sessions, who.user, "execution.cancel", e.id, "requested")
        s.refresh(e)
    return _out(s, e)


def list_executions(s: Session, who: Caller, status: Optional[str], limit: int, offset: int) -> ExecutionList:
    """A page of the caller's executions, newest first (`status`: only those in it), and how many in all."""
    where = [Execution.owner == who.user]
    if status:
        where.append(Execution.status == status)
    total = s.execute(select(func.count()).select_from(Execution).where(*where)).scalar_one()
    rows = s.scalars(select(Execution).where(*where).order_by(Execution.created_at.desc(), Execution.id)
                     .limit(limit).offset(offset)).all()
    names: dict[str, list[str]] = {e.id: [] for e in rows}
    for execution_id, name in s.execute(select(ExecutionEnvVar.execution_id, ExecutionEnvVar.name)
                                        .where(ExecutionEnvVar.execution_id.in_(list(names)))
                                        .order_by(ExecutionEnvVar.name)):
        names[execution_id].append(name)
    return ExecutionList(total=total, items=[ExecutionSummary(**_summary(e, names[e.id])) for e in rows])

