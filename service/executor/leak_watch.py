"""The executor's leak watch: it calls LeakWatch for every job that ran. `inspect` scans the redacted
output (service/leak_detector.py; the owner's dismissed hashes left out) and masks what it found;
`record` keeps the keyed hash of each value the job received (so later findings can name the env var
whatever job printed it) and, for each finding, a row with only its hash, detector, line and masked excerpt,
marks the execution's output restricted, marks the owner's env var versions the finding matches (by hash)
possibly compromised, writes an `execution.leak` audit row (the owner's activity), counts
envvars_leak_findings_total{detector} and tells the webhooks. What the owner does about a finding is in
service/core/leaks.py."""
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Optional

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db import EnvVar, Execution
from service.db.audit import audit_row
from service.db.leaks import CompromisedVersion, EnvVarFingerprint, LeakAllowlist, LeakFinding
from service.leak_detector import Finding, excerpt, fingerprint, mask, scan
from service.metrics import Metrics

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
