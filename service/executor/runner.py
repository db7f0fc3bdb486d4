"""Runs executions on a bounded worker pool: values read from Vault (AppRole) at start, a missing or
unreadable one fails the execution before the job starts and names the env var, output redacted."""
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from service.core.audit import audit
from service.db import EnvVar, Execution, ExecutionEnvVar, now
from service.metrics import Metrics
from service.schemas import check_name
from service.vault_access import ExecutorVault, SecretMissing, VaultDenied, VaultUnavailable

from .base import Backend, JobSpec

log = logging.getLogger("service.executor")
FINAL = ("succeeded", "failed", "cancelled", "timed_out")


def _injectable(name: str) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False
    return True


def redact(output: str, values: dict[str, str]) -> str:
    """Every injected value, and every line of a multiline one, replaced by a marker naming the env var."""
    pieces = []
    for name, value in values.items():
        if value:
            pieces.append((value, name))
            pieces += [(line, name) for line in value.splitlines() if len(line.strip()) >= 4 and line != value]
    for piece, name in sorted(pieces, key=lambda p: -len(p[0])):
        output = output.replace(piece, f"[redacted:{name}]")
    return output


class Executor:
    def __init__(self, sessions: sessionmaker, vault: Callable[[], ExecutorVault], backend: Backend,
                 metrics: Metrics, max_workers: int = 4):
        self._sessions, self._vault, self._backend, self._metrics = sessions, vault, backend, metrics
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="execution")
        self._cancel: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def recover(self) -> int:
        """Executions a previous process left unfinished are failed, never silently lost."""
        with self._sessions.begin() as s:
            stale = s.scalars(select(Execution).where(Execution.status.in_(("queued", "running")))).all()
            for e in stale:
                e.status, e.error, e.finished_at = "failed", "interrupted by a service restart", now()
            return len(stale)

    def submit(self, execution_id: str) -> None:
        with self._lock:
            self._cancel[execution_id] = threading.Event()
        self._pool.submit(self._run, execution_id)

    def cancel(self, execution_id: str) -> bool:
        with self._lock:
            event = self._cancel.get(execution_id)
        if event is None:
            return False
        event.set()
        return True

    def shutdown(self) -> None:
        for event in list(self._cancel.values()):
            event.set()
        self._pool.shutdown(wait=True, cancel_futures=False)

    def _finish(self, execution_id: str, **fields) -> None:
        with self._sessions.begin() as s:
            e = s.get(Execution, execution_id)
            for k, v in fields.items():
                setattr(e, k, v)
            e.finished_at = now()
        self._metrics.executions.labels(outcome=fields["status"]).inc()

    def _run(self, execution_id: str) -> None:
        cancel = self._cancel[execution_id]
        try:
            with self._sessions.begin() as s:
                e = s.get(Execution, execution_id)
                if cancel.is_set():
                    e.status, e.finished_at = "cancelled", now()
                    return
                e.status, e.started_at = "running", now()
                owner, command, timeout = e.owner, list(e.command), e.timeout_seconds
                refs = s.execute(select(ExecutionEnvVar.env_var_id, EnvVar.id, EnvVar.owner, EnvVar.name)
                                 .outerjoin(EnvVar, EnvVar.id == ExecutionEnvVar.env_var_id)
                                 .where(ExecutionEnvVar.execution_id == execution_id)).all()
            # Defence in depth: the junction rows alone are not trusted. Every env var must exist and
            # belong to the execution's owner now, and carry a name a job may be given.
            foreign = [ref for ref, found, who, name in refs
                       if found is None or who != owner or not _injectable(name)]
            if foreign:
                audit(self._sessions, owner, "execution.start", execution_id, "refused",
                            "env_var_ids=" + ",".join(sorted(foreign)))
                return self._finish(execution_id, status="failed", error=(
                    f"env var {foreign[0]} does not exist or does not belong to {owner}; the job did not start"))
            values = {}
            for _ref, env_var_id, _owner, name in refs:
                try:
                    values[name] = self._vault().read(owner, env_var_id)
                except SecretMissing:
                    self._metrics.missing_env_vars.inc()
                    return self._finish(execution_id, status="failed",
                                        error=f"env var {name} has no value in Vault; the job did not start")
                except (VaultUnavailable, VaultDenied) as err:
                    self._metrics.vault_errors.labels(operation="executor_read").inc()
                    return self._finish(execution_id, status="failed",
                                        error=f"could not read env var {name} from Vault ({err}); "
                                              "the job did not start")
            audit(self._sessions, owner, "execution.run", execution_id, "started", "env_vars=" + ",".join(sorted(values)))
            result = self._backend.run(JobSpec(execution_id, command, values, timeout), cancel)
            output = redact(result.output.decode("utf-8", errors="replace"), values)
            del values
            status = ("cancelled" if result.cancelled else "timed_out" if result.timed_out
                      else "succeeded" if result.exit_code == 0 else "failed")
            self._finish(execution_id, status=status, exit_code=result.exit_code, output=output)
        except Exception as err:  # noqa: BLE001 (an execution never stays "running" forever)
            log.exception("execution %s failed in the executor", execution_id)
            self._finish(execution_id, status="failed", error=f"executor error: {type(err).__name__}")
        finally:
            with self._lock:
                self._cancel.pop(execution_id, None)
