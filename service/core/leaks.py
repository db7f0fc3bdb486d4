"""Leaks: what the owner does about a secret the detector (service/leak_detector.py) found in a
job's output, once the executor's LeakWatch (service/executor/leak_watch.py) recorded it.

The owner lists findings, dismisses one as a false positive (who, why; its hash allowlisted for them), sees
the compromised env vars with the jobs that exposed them, and rotates one (a new value, the old versions
marked compromised); a rerun of the same versions refuses a compromised one unless overridden.
"""
import logging
from collections import defaultdict
from typing import Optional, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.auth import Caller
from service.db import EnvVar, now
from service.db.audit import audit_row
from service.db.leaks import CompromisedVersion, LeakAllowlist, LeakFinding

from . import errors

log = logging.getLogger("service")


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
