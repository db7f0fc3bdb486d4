"""Credentials that live and die with one job (dynamic env vars, docs/dynamic-env-vars.md).

At job start the executor makes the job a Vault token of its own (token role `envvars-job`: an orphan, not
renewable, living the job's timeout plus a grace, whose one policy mints database credentials), reads
`<mount>/creds/<role>` with it for each dynamic env var, and records each lease (id, the token's accessor,
role, TTL, issue time) in the database before the job starts: never a value. The values become the env
vars the user mapped them to and are redacted from the output like stored values.

At every exit the lease is revoked with the executor's own narrow capability (`sys/leases/revoke/<mount>/
creds/*`, nothing else of sys/leases), then the job token revokes itself. What a crash of the service
leaves behind the reaper revokes: on start and every `reap_seconds`, the leases of executions that have
ended (another replica, or this one after a restart, marks a dead replica's running executions failed once
their claim runs out). Whatever happens, Vault revokes the lease when its TTL (timeout + grace) ends.
"""
import datetime
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Callable

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from service.db import Execution, now
from service.db.audit import audit_row
from service.db.dynamic import DynamicEnvVar, ExecutionCredential
from service.vault import ExecutorVault, VaultGateway, translate

log = logging.getLogger("service.executor")
FINAL = ("succeeded", "failed", "cancelled", "timed_out")
FIELDS = ("username", "password")  # what the database engine's credentials hold
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


class MintFailed(Exception):
    """A credential could not be minted; the message (names the env var, no value) is the execution's error."""


def render(template: str, data: dict[str, str]) -> str:
    """`template` with each {{field}} replaced by that field of the credential."""
    return _PLACEHOLDER.sub(lambda m: data.get(m.group(1), ""), template)


class LeaseMetrics:
    """Counters of issues and failures; the outstanding leases are read at each scrape (LeaseCollector)."""

    def __init__(self, registry: CollectorRegistry):
        self.issued = Counter("envvars_dynamic_credentials_issued_total",
                              "Dynamic credentials minted for jobs", registry=registry)
        self.revoked = Counter("envvars_dynamic_credentials_revoked_total",
                               "Leases of dynamic credentials revoked, by who revoked them", ["by"], registry=registry)
        self.failures = Counter("envvars_dynamic_credential_failures_total",
                                "Failed mints (issue) and revocations (revoke) of dynamic credentials",
                                ["operation"], registry=registry)
        for op in ("issue", "revoke"):
            self.failures.labels(operation=op)
        for by in ("job_end", "reaper"):
            self.revoked.labels(by=by)


class LeaseCollector(Collector):
    """Outstanding leases (issued, not revoked), those whose execution has ended (overdue: the reaper's
    work, or a failing revocation), and the age of the oldest outstanding one."""

    def __init__(self, sessions: sessionmaker):
        self._sessions = sessions

    def collect(self):
        try:
            with self._sessions() as s:
                outstanding = (ExecutionCredential.lease_id.is_not(None), ExecutionCredential.revoked_at.is_(None))
                count, oldest = s.execute(select(func.count(), func.min(ExecutionCredential.issued_at))
                                          .where(*outstanding)).one()
                overdue = s.execute(select(func.count()).select_from(ExecutionCredential)
                                    .join(Execution, Execution.id == ExecutionCredential.execution_id)
                                    .where(*outstanding, Execution.status.in_(FINAL))).scalar_one()
        except SQLAlchemyError as err:
            log.warning(json.dumps({"event": "metrics_database_error", "error": type(err).__name__}))
            return
        yield GaugeMetricFamily("envvars_dynamic_leases_outstanding",
                                "Leases of dynamic credentials issued and not revoked", value=count)
        yield GaugeMetricFamily("envvars_dynamic_leases_overdue",
                                "Outstanding leases whose execution has ended (should be revoked)", value=overdue)
        age = 0.0
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=datetime.timezone.utc)
            age = max(0.0, (now() - oldest).total_seconds())
        yield GaugeMetricFamily("envvars_dynamic_lease_oldest_age_seconds",
                                "Age of the oldest outstanding lease (0: none)", value=age)


@dataclass
class Minted:
    """What a job got: env vars (values: never logged or stored), what to redact, what to revoke."""
    execution_id: str = ""
    owner: str = ""
    env: dict[str, str] = field(default_factory=dict, repr=False)
    redactions: dict[str, str] = field(default_factory=dict, repr=False)
    leases: list[tuple[str, str]] = field(default_factory=list)  # (dynamic env var id, lease id)
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class LeaseSettings:
    mount: str = "database"
    token_role: str = "envvars-job"  # noqa: S105 (a role name)
    grace_seconds: int = 30  # added to the job's timeout: the lease's TTL
    reap_seconds: float = 30  # the reaper's period


def _no_webhooks(event: str, owner: str, data: dict) -> None:
    pass


class LeaseBroker:
    def __init__(self, sessions: sessionmaker, vault: Callable[[], ExecutorVault], gateway: VaultGateway,
                 metrics: LeaseMetrics, settings: LeaseSettings = LeaseSettings(),
                 emit: Callable[[str, str, dict], None] = _no_webhooks):
        self._sessions, self._vault, self._gateway, self.metrics = sessions, vault, gateway, metrics
        self.settings = settings
        self._emit = emit  # Webhooks.emit: the owner's and the platform team's webhooks (never raises)
        self._reap_lock = threading.Lock()

    def mint(self, execution_id: str, owner: str, timeout_seconds: int, taken: set[str]) -> Minted:
        """Mints every dynamic env var of the execution (`taken`: the names of its stored env vars). Fails
        closed: MintFailed names the env var, after revoking what was minted already."""
        minted = Minted(execution_id, owner)
        with self._sessions() as s:
            rows = s.execute(select(ExecutionCredential, DynamicEnvVar)
                             .outerjoin(DynamicEnvVar, DynamicEnvVar.id == ExecutionCredential.dynamic_env_var_id)
                             .where(ExecutionCredential.execution_id == execution_id)
                             .order_by(ExecutionCredential.name)).all()
        if not rows:
            return minted
        for cred, decl in rows:  # defence in depth, as for stored env vars: owner's, and still declared
            if decl is None or decl.owner != owner:
                raise MintFailed(f"dynamic env var {cred.name} does not exist or does not belong to {owner}; "
                                 "the job did not start")
            clash = sorted(set(decl.env) & (taken | set(minted.env)))
            if clash:
                raise MintFailed(f"env var {clash[0]} of dynamic env var {cred.name} is given twice; the job did not start")
            minted.env.update({k: "" for k in decl.env})
        minted.env.clear()
        ttl = timeout_seconds + self.settings.grace_seconds
        try:
            minted.token, accessor, granted = self._vault().create_job_token(
                self.settings.token_role, ttl, {"execution": execution_id})
        except Exception as err:  # noqa: BLE001 (every Vault failure fails the job before it starts)
            self.metrics.failures.labels(operation="issue").inc()
            raise MintFailed(f"could not mint dynamic env var {rows[0][0].name} (role {rows[0][0].role}): Vault "
                             f"refused or failed to make the job's token ({type(translate(err)).__name__}); "
                             "the job did not start") from None
        if granted < ttl:  # the token role's max TTL is below the job's timeout: its login would end mid-job
            self.metrics.failures.labels(operation="issue").inc()
            self.release(minted)
            raise MintFailed(f"could not mint dynamic env var {rows[0][0].name}: Vault caps the job's token at "
                             f"{granted} s, below the job's timeout plus the grace ({ttl} s); the job did not start")
        client = self._gateway.token_client(minted.token)
        for cred, decl in rows:
            try:
                resp = client.read(f"{self.settings.mount}/creds/{decl.role}")
                if not resp or not resp.get("lease_id"):
                    raise RuntimeError("no lease")
            except Exception as err:  # noqa: BLE001
                self.metrics.failures.labels(operation="issue").inc()
                self.release(minted, by="job_end")
                raise MintFailed(f"could not mint dynamic env var {cred.name} (role {decl.role}, env vars "
                                 f"{', '.join(sorted(decl.env))}) from Vault ({type(translate(err)).__name__}); "
                                 "the job did not start") from None
            data = {k: str(v) for k, v in (resp.get("data") or {}).items() if isinstance(v, (str, int))}
            lease_id = resp["lease_id"]
            # Recorded before the job starts, so the reaper finds it whatever happens next.
            with self._sessions.begin() as s:
                s.execute(update(ExecutionCredential).where(
                    ExecutionCredential.execution_id == execution_id,
                    ExecutionCredential.dynamic_env_var_id == cred.dynamic_env_var_id).values(
                    lease_id=lease_id, token_accessor=accessor,
                    # The job token ends its leases with it: the lease lives at most the job's timeout + grace.
                    ttl_seconds=min(int(resp.get("lease_duration") or ttl), ttl),
                    issued_at=now(), env_names=sorted(decl.env)))
                s.add(audit_row(owner, "execution.credential_issued", execution_id, "ok",
                                f"name={cred.name} role={decl.role} lease={lease_id}"))
            minted.leases.append((cred.dynamic_env_var_id, lease_id))
            self.metrics.issued.inc()
            for env_name, template in decl.env.items():
                minted.env[env_name] = render(template, data)
                minted.redactions[env_name] = minted.env[env_name]
            for key, value in data.items():
                minted.redactions[f"{cred.name}.{key}"] = value
        return minted

    def release(self, minted: Minted, by: str = "job_end") -> None:
        """Revokes the job's leases (the executor's capability), then the job's token (itself)."""
        for dynamic_id, lease_id in minted.leases:
            self._revoke(minted.execution_id, dynamic_id, lease_id, minted.owner, by)
        minted.leases = []
        if minted.token:
            try:
                self._gateway.token_client(minted.token).auth.token.revoke_self()
            except Exception as err:  # noqa: BLE001 (its leases are revoked; it ends with its TTL)
                log.warning(json.dumps({"event": "job_token_revoke_failed", "execution": minted.execution_id,
                                        "error": type(translate(err)).__name__}))
            minted.token = ""
        minted.env.clear()
        minted.redactions.clear()

    def _revoke(self, execution_id: str, dynamic_id: str, lease_id: str, owner: str, by: str) -> bool:
        try:
            self._vault().revoke_lease(lease_id)
        except Exception as err:  # noqa: BLE001 (recorded; the reaper tries again)
            self.metrics.failures.labels(operation="revoke").inc()
            reason = type(translate(err)).__name__
            log.warning(json.dumps({"event": "lease_revoke_failed", "execution": execution_id, "error": reason}))
            first = True
            try:
                with self._sessions.begin() as s:
                    first = not s.scalar(select(ExecutionCredential.revoke_error).where(
                        ExecutionCredential.execution_id == execution_id,
                        ExecutionCredential.dynamic_env_var_id == dynamic_id))
                    s.execute(update(ExecutionCredential).where(
                        ExecutionCredential.execution_id == execution_id,
                        ExecutionCredential.dynamic_env_var_id == dynamic_id).values(
                        revoke_error=f"{now().strftime('%Y-%m-%dT%H:%M:%SZ')}: {reason}"))
            except SQLAlchemyError:
                pass
            # Told once per lease (its first failure), not at each of the reaper's retries; ids and the
            # error's class only, never a lease id or a value.
            if first:
                self._emit("credential.revoke_failed", owner, {"execution_id": execution_id,
                                                               "env_var_id": dynamic_id, "error": reason})
            return False
        with self._sessions.begin() as s:
            s.execute(update(ExecutionCredential).where(
                ExecutionCredential.execution_id == execution_id,
                ExecutionCredential.dynamic_env_var_id == dynamic_id,
                ExecutionCredential.revoked_at.is_(None)).values(revoked_at=now(), revoke_error=""))
            s.add(audit_row(owner, "execution.credential_revoked", execution_id, "ok",
                            f"lease={lease_id} by={by}"))
        self.metrics.revoked.labels(by=by).inc()
        return True

    def reap(self) -> int:
        """Revokes the outstanding leases of executions that have ended; how many."""
        if not self._reap_lock.acquire(blocking=False):
            return 0
        try:
            with self._sessions() as s:
                rows = s.execute(select(ExecutionCredential.execution_id, ExecutionCredential.dynamic_env_var_id,
                                        ExecutionCredential.lease_id, Execution.owner)
                                 .join(Execution, Execution.id == ExecutionCredential.execution_id)
                                 .where(ExecutionCredential.lease_id.is_not(None),
                                        ExecutionCredential.revoked_at.is_(None),
                                        Execution.status.in_(FINAL))).all()
            done = 0
            for execution_id, dynamic_id, lease_id, owner in rows:
                if self._revoke(execution_id, dynamic_id, lease_id, owner, "reaper"):
                    done += 1
            if done:
                log.warning(json.dumps({"event": "leases_reaped", "count": done}))
            return done
        finally:
            self._reap_lock.release()

