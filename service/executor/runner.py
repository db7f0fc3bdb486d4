"""Runs executions owned through the database, so any number of replicas share one queue.

- A replica claims the oldest queued executions it has free workers for (PostgreSQL: `FOR UPDATE SKIP
  LOCKED`, so replicas never wait on each other; SQLite, the single-process default: a conditional update)
  and owns each for as long as it renews the execution's lease. An execution created on a replica with a
  free worker is inserted already claimed by it, and starts without waiting for the claim loop.
- A cancel is a state in the database (`cancel_requested`): the owner notices it within `poll_seconds`,
  whichever replica was asked.
- A queued execution whose lease ran out (its replica is gone) never started: it is queued again. A
  running one is failed, naming the replica and when its lease ended. Every write of an owner is
  conditional on still being the owner, so an execution is never run or ended twice.
- On shutdown a replica stops claiming, gives back what it had not started, lets running jobs end for
  `grace_seconds`, then stops them.

Values are read from Vault (AppRole) just before the job starts; a missing or unreadable one fails the
execution before the job starts and names the env var; output is redacted.
"""
import datetime
import json
import logging
import os
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from service.db import EnvVar, Execution, ExecutionEnvVar, matched, now
from service.db.audit import audit, audit_row
from service.executor.leak_watch import LeakWatch
from service.metrics import Metrics
from service.schemas import as_utc, check_name
from service.vault import ExecutorVault, SecretMissing, VaultDenied, VaultUnavailable

from .base import Backend, JobSpec
from .leases import LeaseBroker, MintFailed
from .redaction import redact, unredacted

log = logging.getLogger("service.executor")
ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled", "timed_out")
READS_IN_FLIGHT = 3  # Vault reads of one replica at once (measured: 4 gained nothing over 3 on two cores)

# The KV version each value was read at, and when: one Core statement executed for all of a job's env vars.
_RECORD_VERSION = (update(ExecutionEnvVar).where(ExecutionEnvVar.execution_id == bindparam("execution"),
                                                 ExecutionEnvVar.env_var_id == bindparam("env_var"))
                   .values(kv_version=bindparam("version"), used_at=bindparam("at")))


class _NotStarted(Exception):
    """The job cannot start; the message is the execution's error."""


def _injectable(name: str) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False
    return True


def _when(t: Optional[datetime.datetime]) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else "an unknown time"


@dataclass(frozen=True)
class ExecutorTiming:
    lease_seconds: float = 15  # a replica silent this long is gone: its executions are taken over
    poll_seconds: float = 0.5  # cancels noticed, other replicas' queued executions picked up
    grace_seconds: float = 20  # at shutdown, for running jobs to end before they are stopped


@dataclass(frozen=True)
class Reservation:
    """A free worker of this replica, for an execution about to be inserted claimed by it."""
    replica: str
    lease_until: datetime.datetime


class _Job:
    """An execution this replica has claimed."""

    def __init__(self):
        self.stop = threading.Event()  # the backend's cancel
        self.reason = ""  # why it was stopped: "cancel", "shutdown" or "lost" (another replica took it over)
        self.ending = False  # this replica is writing its final state

    def stop_for(self, reason: str) -> None:
        if not self.stop.is_set():
            self.reason = reason
            self.stop.set()


class Executor:
    def __init__(self, sessions: sessionmaker, vault: Callable[[], ExecutorVault], backend: Backend,
                 metrics: Metrics, max_workers: int = 4, timing: ExecutorTiming = ExecutorTiming(),
                 replica_id: str = "", leases: Optional[LeaseBroker] = None, leaks: Optional[LeakWatch] = None):
        self._sessions, self._vault, self._backend, self._metrics = sessions, vault, backend, metrics
        self._leases = leases  # dynamic env vars (service/executor/leases.py)
        self._leaks = leaks  # the leak detector over every job's output (service/executor/leak_watch.py)
        self.timing = timing
        self.replica_id = replica_id or f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="execution")
        self._reads = ThreadPoolExecutor(max_workers=READS_IN_FLIGHT, thread_name_prefix="vault-read")
        self._free = max_workers
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._loop: Optional[threading.Thread] = None

    # --- the replica's life -------------------------------------------------------------------------------

    def start(self) -> None:
        """Ends or queues again what gone replicas left, then claims executions until shutdown()."""
        taken = self.take_over_expired()
        if taken:
            log.warning(json.dumps({"event": "executions_taken_over", "count": taken}))
        self._reap()
        self._loop = threading.Thread(target=self._claim_loop, name="executor", daemon=True)
        self._loop.start()

    def shutdown(self) -> None:
        """Stops claiming; what was claimed but not started is given back to the queue; running jobs have
        grace_seconds to end, then are stopped, their executions failed saying so."""
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + self.timing.grace_seconds
        while self._active() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            for job in self._jobs.values():
                job.stop_for("shutdown")
        self._pool.shutdown(wait=True, cancel_futures=False)
        self._reads.shutdown(wait=False, cancel_futures=True)
        if self._loop:
            self._loop.join(10)

    def _active(self) -> int:
        with self._lock:
            return len(self._jobs)

    def _claim_loop(self) -> None:
        renew_every, take_over_every = self.timing.lease_seconds / 3, self.timing.lease_seconds / 2
        next_renew = next_take_over = time.monotonic() + renew_every
        next_reap = time.monotonic() + (self._leases.settings.reap_seconds if self._leases else 0)
        while not (self._stopping.is_set() and not self._active()):
            self._wake.wait(self.timing.poll_seconds)
            self._wake.clear()
            try:
                t = time.monotonic()
                if t >= next_renew:  # also while stopping: running jobs keep their executions
                    self._renew()
                    next_renew = t + renew_every
                self._notice_cancels()
                if self._stopping.is_set():
                    continue
                if t >= next_take_over:
                    self.take_over_expired()
                    next_take_over = t + take_over_every
                if self._leases and t >= next_reap:
                    self._reap()
                    next_reap = t + self._leases.settings.reap_seconds
                self._claim()
            except SQLAlchemyError as err:  # the next round tries again; a lease outlives a few rounds
                log.warning(json.dumps({"event": "executor_database_error", "error": type(err).__name__,
                                        "sqlstate": getattr(getattr(err, "orig", None), "sqlstate", None)}))
            except Exception:  # noqa: BLE001 (the loop renews every lease of this replica: it must go on)
                log.exception("executor loop round failed")

    def _reap(self) -> None:
        """Leases of ended executions still outstanding (a crashed replica's): revoked."""
        if self._leases is None:
            return
        try:
            self._leases.reap()
        except Exception:  # noqa: BLE001 (the next round tries again; Vault ends each lease at its TTL)
            log.exception("lease reaper round failed")

    # --- claims ---------------------------------------------------------------------------------------------

    def lease_end(self) -> datetime.datetime:
        return now() + datetime.timedelta(seconds=self.timing.lease_seconds)

    def reserve(self) -> Optional[Reservation]:
        """A free worker for an execution about to be created, or None (all busy, or stopping: the execution
        is then queued for whichever replica frees a worker first)."""
        with self._lock:
            if self._stopping.is_set() or self._loop is None or self._free == 0:
                return None
            self._free -= 1
        return Reservation(self.replica_id, self.lease_end())

    def unreserve(self, reservation: Optional[Reservation]) -> None:
        """The execution was not created after all."""
        if reservation:
            self._freed()

    def created(self, execution_id: str, reservation: Optional[Reservation]) -> None:
        """The execution's row is committed: run it here if it was inserted claimed by this replica."""
        if reservation is None:
            self._wake.set()
        else:
            self._run_claimed(execution_id)

    def _freed(self) -> None:
        with self._lock:
            self._free += 1
        self._wake.set()

    def _run_claimed(self, execution_id: str) -> None:
        with self._lock:
            self._jobs[execution_id] = _Job()
        self._pool.submit(self._run, execution_id)

    def _claim(self) -> None:
        with self._lock:  # the free workers are taken at once: reserve() may run meanwhile
            wanted, self._free = self._free, 0
        if wanted <= 0:
            return
        claimed: list[str] = []
        try:
            with self._sessions.begin() as s:
                ids = s.scalars(select(Execution.id)
                                .where(Execution.status == "queued", Execution.claimed_by.is_(None))
                                .order_by(Execution.created_at).limit(wanted)
                                .with_for_update(skip_locked=True)).all()
                lease_until = self.lease_end()
                for execution_id in ids:  # one by one: on SQLite another process may have read the same rows
                    if matched(s, update(Execution).where(Execution.id == execution_id, Execution.status == "queued",
                                                          Execution.claimed_by.is_(None))
                               .values(claimed_by=self.replica_id, lease_until=lease_until)):
                        claimed.append(execution_id)
        except BaseException:
            claimed = []  # rolled back: nothing was claimed
            raise
        finally:
            with self._lock:
                self._free += wanted - len(claimed)
        for execution_id in claimed:
            self._run_claimed(execution_id)

    def _renew(self) -> None:
        with self._lock:
            mine = list(self._jobs)
        if mine:
            with self._sessions.begin() as s:
                matched(s, update(Execution).where(Execution.id.in_(mine), Execution.claimed_by == self.replica_id,
                                                   Execution.status.in_(ACTIVE))
                        .values(lease_until=self.lease_end()))

    def _notice_cancels(self) -> None:
        with self._lock:
            mine = dict(self._jobs)
        if not mine:
            return
        with self._sessions() as s:
            rows = {r.id: r for r in s.execute(
                select(Execution.id, Execution.claimed_by, Execution.status, Execution.cancel_requested)
                .where(Execution.id.in_(list(mine))))}
        for execution_id, job in mine.items():
            row = rows.get(execution_id)
            if row is None or row.claimed_by != self.replica_id or (row.status not in ACTIVE and not job.ending):
                job.stop_for("lost")  # another replica took it over: this one must not run it on
            elif row.cancel_requested:
                job.stop_for("cancel")

    def take_over_expired(self) -> int:
        """Executions whose replica stopped renewing their lease (it is gone): cancelled if that was asked,
        queued again if they never started, failed if they were running. How many."""
        t = now()
        with self._sessions.begin() as s:
            rows = s.scalars(select(Execution)
                             .where(Execution.status.in_(ACTIVE), Execution.claimed_by.is_not(None),
                                    Execution.lease_until < t)
                             .with_for_update(skip_locked=True)).all()
            for e in rows:
                gone = f"replica {e.claimed_by} stopped renewing its lease at {_when(e.lease_until)}"
                if e.cancel_requested:
                    e.status, e.finished_at, e.error = "cancelled", t, f"cancelled; {gone}"
                elif e.status == "queued":
                    e.claimed_by, e.lease_until = None, None  # it never started: any replica may run it
                else:
                    e.status, e.finished_at = "failed", t
                    e.error = (f"{gone} while the job ran (the replica is gone): the job was stopped and "
                               "its end was not recorded")
            ended = [(e.id, e.status) for e in rows if e.status in FINAL]
            was_running = {e.id for e in rows if e.started_at is not None}
        for execution_id, status in ended:
            self._metrics.executions.labels(outcome=status).inc()
            if execution_id in was_running:
                try:  # a container or Kubernetes Job outlives its replica: it must not run on unseen
                    self._backend.abandon(execution_id)
                except Exception as err:  # noqa: BLE001 (the execution's state is recorded; this is cleanup)
                    log.warning(json.dumps({"event": "abandon_failed", "execution": execution_id,
                                            "error": type(err).__name__}))
        return len(rows)

    # --- cancel -----------------------------------------------------------------------------------------

    def cancel(self, execution_id: str) -> None:
        """Cancels it whichever replica runs it: at once if no replica has claimed it yet, otherwise by its
        owner, which polls for cancels."""
        with self._sessions.begin() as s:
            unclaimed = (Execution.id == execution_id) & (Execution.status == "queued") & Execution.claimed_by.is_(None)
            if matched(s, update(Execution).where(unclaimed)
                       .values(status="cancelled", cancel_requested=True, finished_at=now())):
                self._metrics.executions.labels(outcome="cancelled").inc()
            else:
                matched(s, update(Execution).where(Execution.id == execution_id, Execution.status.in_(ACTIVE))
                        .values(cancel_requested=True))
        with self._lock:
            job = self._jobs.get(execution_id)
        if job:
            job.stop_for("cancel")

    # --- one execution ----------------------------------------------------------------------------------------

    def _mine(self, execution_id: str):
        """The condition of every write this replica makes to an execution it claimed."""
        return ((Execution.id == execution_id) & (Execution.claimed_by == self.replica_id)
                & Execution.status.in_(ACTIVE))

    def _finish(self, execution_id: str, status: str, **fields) -> None:
        job = self._jobs[execution_id]
        job.ending = True
        with self._sessions.begin() as s:
            done = matched(s, update(Execution).where(self._mine(execution_id))
                           .values(status=status, finished_at=now(), **fields))
        if done:
            self._metrics.executions.labels(outcome=status).inc()
        else:  # its lease ran out and another replica ended it: that state stands
            log.warning(json.dumps({"event": "execution_taken_over", "execution": execution_id}))

    def _begin(self, execution_id: str, owner: str, values: dict[str, str], versions: dict[str, int]) -> bool:
        """Marks it running, unless it was cancelled or this replica is stopping (it goes back to the queue),
        which of its env vars (`values`, by name) the output cannot hide, and the KV version of each value
        (by env var id); its audit row goes in the same transaction."""
        unredacted_names = unredacted(values)
        job = self._jobs[execution_id]
        with self._sessions.begin() as s:
            if self._stopping.is_set():
                matched(s, update(Execution).where(self._mine(execution_id), Execution.status == "queued")
                        .values(claimed_by=None, lease_until=None))
                return False
            started = now()
            if matched(s, update(Execution).where(self._mine(execution_id), Execution.status == "queued",
                                                  Execution.cancel_requested.is_(False))
                       .values(status="running", started_at=started)):
                if unredacted_names:
                    s.execute(update(ExecutionEnvVar).where(ExecutionEnvVar.execution_id == execution_id,
                                                            ExecutionEnvVar.name.in_(unredacted_names))
                              .values(redacted=False))
                if versions:  # in the transaction that marks it running; one statement, not one per env var
                    s.connection().execute(_RECORD_VERSION, [
                        {"execution": execution_id, "env_var": env_var_id, "version": version, "at": started}
                        for env_var_id, version in versions.items()])
                s.add(audit_row(owner, "execution.run", execution_id, "started", "env_vars=" + ",".join(sorted(values))))
                return True
            cancelled = s.scalar(select(Execution.cancel_requested).where(self._mine(execution_id)))
        if cancelled:
            self._finish(execution_id, "cancelled")
        else:
            job.stop_for("lost")
        return False

    def _read_values(self, owner: str, refs) -> tuple[dict[str, str], dict[str, int]]:
        """Each env var's value (by name) and KV version (by id). A few reads are in flight at once: one
        read's wait for Vault overlaps the next one's request; outcomes are taken in order, so the first
        env var that fails is the one named."""
        vault = self._vault()
        reads = [self._reads.submit(vault.read_versioned, owner, env_var_id, pinned)
                 for _ref, env_var_id, _owner, _name, pinned, _x in refs]
        values, versions = {}, {}
        for (_ref, env_var_id, _owner, name, pinned, _x), read in zip(refs, reads, strict=True):
            try:  # `pinned`: a rerun of the same versions reads exactly the recorded one
                values[name], versions[env_var_id] = read.result()
            except SecretMissing:
                self._metrics.missing_env_vars.inc()
                raise _NotStarted(f"env var {name} has no value in Vault; the job did not start" if pinned is None
                                  else f"version {pinned} of env var {name} is no longer in Vault (deleted, "
                                  "destroyed or pruned); the job did not start") from None
            except (VaultUnavailable, VaultDenied) as err:
                self._metrics.vault_errors.labels(operation="executor_read").inc()
                raise _NotStarted(f"could not read env var {name} from Vault ({err}); the job did not start") from None
        return values, versions

    def _run(self, execution_id: str) -> None:
        try:
            self._execute(execution_id)
        except Exception as err:  # noqa: BLE001 (an execution never stays "running" forever)
            log.exception("execution %s failed in the executor", execution_id)
            try:
                self._finish(execution_id, "failed", error=f"executor error: {type(err).__name__}")
            except SQLAlchemyError:  # its lease runs out and another replica fails it
                log.exception("execution %s: its failure could not be recorded", execution_id)
        finally:
            with self._lock:
                self._jobs.pop(execution_id, None)
            self._freed()

    def _execute(self, execution_id: str) -> None:
        job = self._jobs[execution_id]
        with self._sessions() as s:
            e = s.get(Execution, execution_id)
            if e is None:
                return
            owner, command, timeout = e.owner, list(e.command), e.timeout_seconds
            refs = s.execute(select(ExecutionEnvVar.env_var_id, EnvVar.id, EnvVar.owner, EnvVar.name,
                                    ExecutionEnvVar.kv_version, EnvVar.expires_at)
                             .outerjoin(EnvVar, EnvVar.id == ExecutionEnvVar.env_var_id)
                             .where(ExecutionEnvVar.execution_id == execution_id)).all()
        # Defence in depth: the junction rows alone are not trusted. Every env var must exist and
        # belong to the execution's owner now, and carry a name a job may be given.
        foreign = [ref for ref, found, who, name, _v, _x in refs
                   if found is None or who != owner or not _injectable(name)]
        if foreign:
            audit(self._sessions, owner, "execution.start", execution_id, "refused",
                  "env_var_ids=" + ",".join(sorted(foreign)))
            if any(found is None for _ref, found, *_rest in refs):  # deleted after the job was queued
                self._metrics.missing_env_vars.inc()
            return self._finish(execution_id, "failed", error=(
                f"env var {foreign[0]} does not exist or does not belong to {owner}; the job did not start"))
        t = now()
        expired = sorted((name, at) for _r, _i, _o, name, _v, x in refs if (at := as_utc(x)) is not None and at <= t)
        if expired:  # fails closed like a missing value: its owner set a date past which it must not be used
            self._metrics.expired_env_vars.inc()
            return self._finish(execution_id, "failed",
                                error=f"env var {expired[0][0]} expired at {_when(expired[0][1])}; the job did not start")
        try:
            values, versions = self._read_values(owner, refs)
        except _NotStarted as refused:
            return self._finish(execution_id, "failed", error=str(refused))
        minted = None
        if self._leases is not None:
            try:  # after the stored values: a job refused for those never mints
                minted = self._leases.mint(execution_id, owner, timeout, set(values))
            except MintFailed as refused:
                return self._finish(execution_id, "failed", error=str(refused))
        hidden = dict(values)
        try:
            if not self._begin(execution_id, owner, values, versions):
                return
            env = values
            if minted and minted.env:
                env, hidden = {**values, **minted.env}, {**values, **minted.redactions}
            result = self._backend.run(JobSpec(execution_id, command, env, timeout), job.stop)
        finally:
            if minted is not None and self._leases is not None:  # every exit of the job: its credentials end with it
                self._leases.release(minted)
        output = redact(result.output.decode("utf-8", errors="replace"), hidden)
        leak = None
        if self._leaks is not None:  # after redaction: what it could not know, masked before anything is stored
            leak = self._leaks.inspect(owner, output, hidden, {name: i for _r, i, _o, name, _v, _x in refs}, versions)
            output = leak.output
        del values, hidden, env
        if job.reason == "lost":
            return
        if leak is not None and self._leaks is not None:  # before the end: whoever sees the job ended sees its findings
            self._leaks.record(execution_id, owner, leak)
        if result.cancelled and job.reason == "shutdown":
            return self._finish(execution_id, "failed", exit_code=result.exit_code, output=output, error=(
                f"stopped: replica {self.replica_id} shut down and the job did not end within its "
                f"{self.timing.grace_seconds:g} s grace period"))
        status = ("cancelled" if result.cancelled else "timed_out" if result.timed_out
                  else "succeeded" if result.exit_code == 0 else "failed")
        self._finish(execution_id, status, exit_code=result.exit_code, output=output)
