"""Executions: a job started with some of the caller's env vars (the executor reads their values from
Vault and runs it), followed and cancelled by its owner only."""
from typing import Optional, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.auth import Caller
from service.components import Components
from service.db import EnvVar, Execution, ExecutionEnvVar, new_id
from service.db.audit import audit, audit_row
from service.executor.runner import ACTIVE
from service.schemas import ExecutionCreate, ExecutionEnvVarOut, ExecutionList, ExecutionOut, ExecutionRerun, ExecutionSummary
from service.vault import VaultDenied, VaultUnavailable

from . import dynamic_env_vars, errors
from .leaks import refuse_compromised
from .user_vault import user_vault, vault_error, vault_failed


def _summary(e: Execution, env_var_names: list[str]) -> dict:
    return dict(id=e.id, status=e.status, command=e.command, env_var_names=env_var_names, exit_code=e.exit_code,
                error=e.error, created_at=e.created_at, started_at=e.started_at, finished_at=e.finished_at)


def _out(s: Session, e: Execution, links: Optional[Sequence[ExecutionEnvVar]] = None) -> ExecutionOut:
    """`links`: its env vars, by name, when the caller has them already (a new execution's)."""
    if links is None:
        links = s.scalars(select(ExecutionEnvVar).where(ExecutionEnvVar.execution_id == e.id)
                          .order_by(ExecutionEnvVar.name)).all()
    return ExecutionOut(**_summary(e, [r.name for r in links]), output=e.output,
                        unredacted_env_vars=[r.name for r in links if not r.redacted],
                        env_vars=[ExecutionEnvVarOut(id=r.env_var_id, name=r.name, kv_version=r.kv_version)
                                  for r in links],
                        credentials=dynamic_env_vars.credentials_of(s, e.id))


def _owned(s: Session, who: Caller, execution_id: str) -> Execution:
    e = s.get(Execution, execution_id)
    if e is None or e.owner != who.user:
        raise errors.NotFound("execution not found")
    return e


def _env_vars(s: Session, who: Caller, ids: Sequence[str]) -> dict[str, EnvVar]:
    """The caller's env vars among `ids` (not one still being created), by id."""
    rows = s.scalars(select(EnvVar).where(EnvVar.id.in_(ids), EnvVar.owner == who.user, EnvVar.visible())).all()
    return {r.id: r for r in rows}


def start_execution(s: Session, c: Components, who: Caller, body: ExecutionCreate) -> ExecutionOut:
    timeout = body.timeout_seconds or c.settings.default_timeout_seconds
    if timeout > c.settings.max_timeout_seconds:
        raise errors.InvalidField("timeout_seconds", f"must be at most {c.settings.max_timeout_seconds}")
    found = _env_vars(s, who, body.env_var_ids)
    missing = [i for i in body.env_var_ids if i not in found]
    if missing:  # unknown and someone else's look the same
        raise errors.NotFound(f"env var not found: {missing[0]}")
    dynamic = dynamic_env_vars.selected(s, c, who, body.dynamic_env_var_ids, {r.name for r in found.values()},
                                        "the job was not started")
    return _create(s, c, who, body.command, timeout, list(found.values()), {}, "", dynamic)


def _create(s: Session, c: Components, who: Caller, command: list[str], timeout: int, rows: list[EnvVar],
            versions: dict[str, int], detail: str, dynamic: Sequence = ()) -> ExecutionOut:
    """Inserts the execution and its env vars (`versions`: the KV version to read of each, by id; the
    newest otherwise) and hands it to the executor."""
    # With a free worker here, the row is inserted claimed by this replica and starts at once; otherwise
    # it is queued for the first replica with a free worker.
    reservation = c.executor.reserve()
    try:
        # The id is made here, not by a flush: the execution and its env vars go in one round of inserts.
        execution = Execution(id=new_id(), owner=who.user, command=command, status="queued",
                              timeout_seconds=timeout, claimed_by=reservation and reservation.replica,
                              lease_until=reservation and reservation.lease_until)
        links = [ExecutionEnvVar(execution_id=execution.id, env_var_id=r.id, name=r.name, redacted=True,
                                 kv_version=versions.get(r.id)) for r in sorted(rows, key=lambda r: r.name)]
        s.add(execution)
        s.add_all(links)
        s.add_all(dynamic_env_vars.links(execution.id, dynamic))
        s.add(audit_row(who.user, "execution.start", execution.id, "queued",
                        (detail + "env_vars=" + ",".join(link.name for link in links)
                         + (";dynamic=" + ",".join(d.name for d in dynamic) if dynamic else ""))[:512]))
        s.commit()
    except BaseException:
        c.executor.unreserve(reservation)
        raise
    try:
        return _out(s, execution, links)  # before the executor takes it: the answer says what was asked
    finally:
        c.executor.created(execution.id, reservation)


def rerun_execution(s: Session, c: Components, who: Caller, execution_id: str, body: ExecutionRerun) -> ExecutionOut:
    """A new execution of the same command, timeout and env vars: with the newest value of each, or with
    exactly the KV versions the first one received. Refused before anything runs, naming the env var,
    when one was deleted or (same versions) when its version is no longer readable."""
    e = _owned(s, who, execution_id)
    refs = s.execute(select(ExecutionEnvVar.env_var_id, ExecutionEnvVar.name, ExecutionEnvVar.kv_version)
                     .where(ExecutionEnvVar.execution_id == e.id).order_by(ExecutionEnvVar.name)).all()
    found = _env_vars(s, who, [r.env_var_id for r in refs])
    for r in refs:
        if r.env_var_id not in found:
            raise errors.CannotRerun(f"env var {r.name} was deleted since this job ran; it cannot run again")
    versions: dict[str, int] = {}
    if body.versions == "same":
        for r in refs:
            if r.kv_version is None:
                raise errors.CannotRerun(
                    f"no version of env var {r.name} was recorded for this job (it did not start, or ran before "
                    "versions were recorded); run it again with the latest versions")
            versions[r.env_var_id] = r.kv_version
        refuse_compromised(s, refs, body.allow_compromised)  # a version a leak exposed: only when asked
        s.commit()  # no transaction stays open across the Vault calls
        if refs:
            _check_readable(c, who, refs)
    # Dynamic env vars: fresh credentials from the same roles, each grant asked of Vault again.
    dynamic = dynamic_env_vars.selected(s, c, who, dynamic_env_vars.dynamic_ids_of(s, e.id),
                                        {found[r.env_var_id].name for r in refs}, "the job was not run again")
    return _create(s, c, who, list(e.command), e.timeout_seconds, [found[r.env_var_id] for r in refs], versions,
                   f"rerun={e.id},versions={body.versions}{',allow_compromised' if body.allow_compromised else ''};",
                   dynamic)


def _check_readable(c: Components, who: Caller, refs: Sequence) -> None:
    """Each recorded version still readable, asked of Vault as the caller (metadata only, no value): a
    refusal names the env var now rather than a job failing later. The executor checks again as it reads."""
    vault = user_vault(c, who)
    for r in refs:
        try:
            readable = vault.readable_versions(r.env_var_id)
        except (VaultUnavailable, VaultDenied) as err:
            vault_failed(c, who, "read_metadata", err)
            raise vault_error(err, "the job was not run again") from None
        if r.kv_version not in readable:
            raise errors.CannotRerun(
                f"version {r.kv_version} of env var {r.name} is no longer in Vault (deleted, destroyed, or pruned "
                "as the mount keeps a bounded number of versions); run it again with the latest versions")


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

