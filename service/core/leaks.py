"""Leaks: what happens when the detector (service/executor/leak_detector.py) finds a secret in a job's
output, and what its owner does about it.

The executor calls LeakWatch for every job that ran: `inspect` scans the redacted output (the owner's
dismissed hashes left out) and masks what it found; `record` keeps the keyed hash of each value the job
received (so later findings can name the env var whatever job printed it) and, for each finding, a row with
only its hash, detector, line and masked excerpt, marks the execution's output restricted, marks the
owner's env var versions the finding matches (by hash) possibly compromised, writes an `execution.leak`
audit row (the owner's activity), counts envvars_leak_findings_total{detector} and tells the webhooks.

The owner then lists findings, dismisses one as a false positive (who, why; its hash allowlisted for
them), sees the compromised env vars with the jobs that exposed them, and rotates one (a new value, the old
versions marked compromised); a rerun of the same versions refuses a compromised one unless overridden.
"""
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.auth import Caller
from service.db import EnvVar, Execution, now
from service.executor.leak_detector import Finding, excerpt, fingerprint, mask, scan
from service.leak_models import CompromisedVersion, EnvVarFingerprint, LeakAllowlist, LeakFinding
from service.metrics import Metrics

from . import errors
from .audit import audit_row

log = logging.getLogger("service")
Notify = Callable[[str, str, dict], None]  # (event, owner, payload): the webhooks (never a value)


@dataclass
class Leak:
    """What inspect() found in one job's output: the masked output, the findings with their line and excerpt
    in it, and the hash of each value the job received (by env var name: id, KV version, hash)."""
    output: str
    findings: list[Finding] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # each finding's line in the masked output
    excerpts: list[str] = field(default_factory=list)
    received: dict[str, tuple[str, int, str]] = field(default_factory=dict)


class LeakWatch:
    def __init__(self, sessions: sessionmaker, metrics: Metrics, key: bytes, notify: Optional[Notify] = None):
        self._sessions, self._metrics, self._key, self._notify = sessions, metrics, key, notify

    def fingerprint(self, owner: str, value: str) -> str:
        return fingerprint(self._key, owner, value)

    def inspect(self, owner: str, output: str, values: dict[str, str], ids: dict[str, str],
                versions: dict[str, int]) -> Leak:
        """`values` by env var name, `ids` env var id by name, `versions` KV version by env var id."""
        with self._sessions() as s:
            allowed = s.scalars(select(LeakAllowlist.secret_hash).where(LeakAllowlist.owner == owner)).all()
        findings = scan(output, values, self._key, owner, allowed)
        received = {name: (ids[name], versions[ids[name]], fingerprint(self._key, owner, value))
                    for name, value in values.items() if name in ids and ids[name] in versions}
        if not findings:
            return Leak(output, received=received)
        masked = mask(output, findings)
        lines, excerpts, removed = [], [], 0
        for f in sorted(findings, key=lambda f: f.start):  # a masked span of several lines shifts the rest
            line = f.line - removed
            lines.append(line)
            excerpts.append(excerpt(masked, line, f.detector)[:512])
            removed += output.count("\n", f.start, f.end)
        return Leak(masked, sorted(findings, key=lambda f: f.start), lines, excerpts, received)

    def record(self, execution_id: str, owner: str, leak: Leak) -> None:
        """In one transaction, before the execution's end is recorded (whoever sees it ended sees these)."""
        exposed: dict[tuple[str, int], str] = {}
        with self._sessions.begin() as s:
            self._keep_fingerprints(s, owner, leak.received)
            if not leak.findings:
                return
            by_hash: dict[str, list[tuple[str, int]]] = defaultdict(list)
            hashes = sorted({f.secret_hash for f in leak.findings})
            for env_var_id, version, digest in s.execute(
                    select(EnvVarFingerprint.env_var_id, EnvVarFingerprint.kv_version, EnvVarFingerprint.secret_hash)
                    .where(EnvVarFingerprint.owner == owner, EnvVarFingerprint.secret_hash.in_(hashes))):
                by_hash[digest].append((env_var_id, version))
            for f, line, text in zip(leak.findings, leak.lines, leak.excerpts, strict=True):
                matched = ([leak.received[f.env_var][:2]] if f.env_var in leak.received
                           else sorted(by_hash.get(f.secret_hash, [])))
                first = matched[0] if matched else (None, None)
                s.add(LeakFinding(execution_id=execution_id, owner=owner, detector=f.detector,
                                  secret_hash=f.secret_hash, line=line, excerpt=text, env_var_id=first[0],
                                  kv_version=first[1], status="open"))
                for key in matched:
                    exposed[key] = f.detector
            names = dict(s.execute(select(EnvVar.id, EnvVar.name).where(
                EnvVar.id.in_(sorted({i for i, _ in exposed}) or [""]))).all())
            for (env_var_id, version) in exposed:
                if s.get(CompromisedVersion, (env_var_id, version)) is None:
                    s.add(CompromisedVersion(env_var_id=env_var_id, kv_version=version, owner=owner, state="possibly"))
            s.execute(update(Execution).where(Execution.id == execution_id).values(output_restricted=True))
            detectors = sorted({f.detector for f in leak.findings})
            s.add(audit_row(owner, "execution.leak", execution_id, "found", (
                f"findings={len(leak.findings)} detectors={','.join(detectors)}"
                + (" compromised=" + ",".join(sorted({f"{names.get(i, i)}@{v}" for i, v in exposed})) if exposed else ""))))
        for f in leak.findings:
            self._metrics.leak_findings.labels(detector=f.detector).inc()
        log.warning(json.dumps({"event": "leak_found", "execution": execution_id, "findings": len(leak.findings),
                                "detectors": detectors}))
        if self._notify:
            self._notify("leak.found", owner, {
                "execution_id": execution_id, "findings": [
                    {"detector": f.detector, "line": line} for f, line in zip(leak.findings, leak.lines, strict=True)],
                "possibly_compromised": [{"env_var_id": i, "name": names.get(i), "kv_version": v}
                                         for i, v in sorted(exposed)]})

    @staticmethod
    def _keep_fingerprints(s: Session, owner: str, received: dict[str, tuple[str, int, str]]) -> None:
        if not received:
            return
        ids = sorted({i for i, _v, _h in received.values()})
        known = {(i, v) for i, v in s.execute(select(EnvVarFingerprint.env_var_id, EnvVarFingerprint.kv_version)
                                              .where(EnvVarFingerprint.env_var_id.in_(ids)))}
        for env_var_id, version, digest in received.values():
            if (env_var_id, version) not in known:
                known.add((env_var_id, version))
                s.add(EnvVarFingerprint(env_var_id=env_var_id, kv_version=version, owner=owner, secret_hash=digest))


# --- the owner's side ------------------------------------------------------------------------------------

def _finding_out(f: LeakFinding, names: dict[str, str]) -> dict:
    return {"id": f.id, "execution_id": f.execution_id, "detector": f.detector, "line": f.line, "excerpt": f.excerpt,
            "env_var": ({"id": f.env_var_id, "name": names.get(f.env_var_id)} if f.env_var_id else None),
            "kv_version": f.kv_version, "status": f.status, "created_at": f.created_at,
            "dismissed_by": f.dismissed_by, "dismissed_reason": f.dismissed_reason, "dismissed_at": f.dismissed_at}


def _names(s: Session, who: Caller, ids) -> dict[str, str]:
    ids = sorted({i for i in ids if i})
    if not ids:
        return {}
    return dict(s.execute(select(EnvVar.id, EnvVar.name).where(EnvVar.owner == who.user, EnvVar.id.in_(ids))).all())


def list_findings(s: Session, who: Caller, status: Optional[str], execution_id: Optional[str], limit: int,
                  offset: int) -> dict:
    where = [LeakFinding.owner == who.user]
    if status:
        where.append(LeakFinding.status == status)
    if execution_id:
        where.append(LeakFinding.execution_id == execution_id)
    total = s.execute(select(func.count()).select_from(LeakFinding).where(*where)).scalar_one()
    rows = s.scalars(select(LeakFinding).where(*where).order_by(LeakFinding.created_at.desc(), LeakFinding.id)
                     .limit(limit).offset(offset)).all()
    names = _names(s, who, [r.env_var_id for r in rows])
    s.commit()
    return {"items": [_finding_out(r, names) for r in rows], "total": total}


def dismiss(s: Session, who: Caller, finding_id: str, reason: str) -> dict:
    """A false positive: recorded with who and why; its hash is never reported for this user again, and the
    version it exposed is no longer possibly compromised unless another open finding exposes it."""
    f = s.get(LeakFinding, finding_id)
    if f is None or f.owner != who.user:
        raise errors.NotFound("finding not found")
    if f.status != "open":
        raise errors.InvalidField("id", "this finding was dismissed already")
    f.status, f.dismissed_by, f.dismissed_reason, f.dismissed_at = "dismissed", who.user, reason, now()
    if s.get(LeakAllowlist, (who.user, f.secret_hash)) is None:
        s.add(LeakAllowlist(owner=who.user, secret_hash=f.secret_hash, finding_id=f.id, reason=reason))
    if f.env_var_id is not None and f.kv_version is not None:
        s.flush()
        still_open = s.execute(select(func.count()).select_from(LeakFinding).where(
            LeakFinding.env_var_id == f.env_var_id, LeakFinding.kv_version == f.kv_version,
            LeakFinding.status == "open")).scalar_one()
        if not still_open:
            s.execute(delete(CompromisedVersion).where(
                CompromisedVersion.env_var_id == f.env_var_id, CompromisedVersion.kv_version == f.kv_version,
                CompromisedVersion.state == "possibly"))
    s.add(audit_row(who.user, "leak.dismiss", f.execution_id, "ok",
                    f"finding={f.id} detector={f.detector} reason={reason}"[:512]))
    s.commit()
    return _finding_out(f, _names(s, who, [f.env_var_id]))


def compromised(s: Session, who: Caller, env_var_id: Optional[str] = None) -> list[dict]:
    """The caller's env vars with a possibly compromised or compromised version: each version's state and
    the jobs whose output exposed it (open or not)."""
    where = [CompromisedVersion.owner == who.user]
    if env_var_id:
        where.append(CompromisedVersion.env_var_id == env_var_id)
    versions = s.execute(select(CompromisedVersion.env_var_id, CompromisedVersion.kv_version, CompromisedVersion.state,
                                CompromisedVersion.since).where(*where)
                         .order_by(CompromisedVersion.env_var_id, CompromisedVersion.kv_version.desc())).all()
    ids = sorted({v.env_var_id for v in versions})
    jobs: dict[tuple[Optional[str], Optional[int]], list[str]] = defaultdict(list)
    if ids:
        for i, version, execution_id in s.execute(
                select(LeakFinding.env_var_id, LeakFinding.kv_version, LeakFinding.execution_id).distinct()
                .where(LeakFinding.owner == who.user, LeakFinding.env_var_id.in_(ids))
                .order_by(LeakFinding.execution_id)):
            jobs[(i, version)].append(execution_id)
    names = _names(s, who, ids)
    s.commit()
    out: dict[str, dict] = {}
    for v in versions:
        if v.env_var_id not in names:  # deleted since: its values are destroyed
            continue
        entry = out.setdefault(v.env_var_id, {"id": v.env_var_id, "name": names[v.env_var_id], "versions": [],
                                              "exposed_by": []})
        entry["versions"].append({"kv_version": v.kv_version, "state": v.state, "since": v.since,
                                  "exposed_by": jobs.get((v.env_var_id, v.kv_version), [])})
        entry["exposed_by"] = sorted(set(entry["exposed_by"]) | set(jobs.get((v.env_var_id, v.kv_version), [])))
    return sorted(out.values(), key=lambda e: e["name"])


def mark_rotated(s: Session, who: Caller, env_var_id: str, old_version: Optional[int]) -> list[int]:
    """After a rotation: the version that was current and every exposed one are compromised for good."""
    rows = s.scalars(select(CompromisedVersion).where(CompromisedVersion.owner == who.user,
                                                      CompromisedVersion.env_var_id == env_var_id)).all()
    marked = {r.kv_version for r in rows}
    for r in rows:
        r.state = "compromised"
    if old_version is not None and old_version not in marked:
        s.add(CompromisedVersion(env_var_id=env_var_id, kv_version=old_version, owner=who.user, state="compromised"))
        marked.add(old_version)
    s.add(audit_row(who.user, "env_var.rotate", env_var_id, "ok",
                    "compromised=" + ",".join(str(v) for v in sorted(marked))))
    s.commit()
    return sorted(marked)


def refuse_compromised(s: Session, refs: Sequence, allow: bool) -> None:
    """A rerun of the same versions: CannotRerun naming the env var when a version it would read is
    (possibly) compromised, unless the caller overrides it explicitly."""
    pairs = [(r.env_var_id, r.kv_version) for r in refs if r.kv_version is not None]
    if allow or not pairs:
        return
    rows = s.execute(select(CompromisedVersion.env_var_id, CompromisedVersion.kv_version, CompromisedVersion.state)
                     .where(CompromisedVersion.env_var_id.in_(sorted({i for i, _ in pairs})))).all()
    bad = {(r.env_var_id, r.kv_version): r.state for r in rows}
    for r in refs:
        state = bad.get((r.env_var_id, r.kv_version))
        if state:
            label = "possibly compromised" if state == "possibly" else "compromised"
            raise errors.CannotRerun(
                f"version {r.kv_version} of env var {r.name} is {label} (a job's output exposed it); rotate it and "
                "run with the latest versions, or run it again with allow_compromised: true")
