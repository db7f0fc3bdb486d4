""".env import: a preview (each entry's line, name and status; never a value) and an all-or-nothing apply.

Parsing is python-dotenv's own parser (`dotenv.parser.parse_stream`): `export ` prefixes, comments,
single quotes literal, escapes in double quotes, quoted values across lines. Its bindings carry the line
they start on and flag the lines it cannot parse. `${VAR}` is not expanded (python-dotenv's
`dotenv_values` would): a secret containing `$` must arrive as written.

Apply, with the consistency rules of service/core/env_vars.py (no transaction held across a Vault call):
1. every entry checked first: an invalid, reserved or duplicate entry, or an existing name without an
   explicit decision, refuses the whole import with nothing written anywhere;
2. one short transaction claims every row involved: new rows inserted claimed (invisible until done),
   rows to overwrite claimed as an update would;
3. the values are written to Vault as the user, in file order; the claims' leases are renewed as it goes;
4. one transaction releases every claim with its audit rows.
A Vault failure at any entry, a lost claim or a database failure at the end undoes what this import wrote
(new values destroyed, overwritten ones restored to their previous version) and releases the claims: the
import is applied whole or not at all.
"""
import io
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional

from dotenv.parser import parse_stream
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from service.auth import Caller
from service.components import Components
from service.db import EnvVar, matched, now
from service.db.audit import audit_failure, audit_row, written
from service.schemas import (
    MAX_NAME,
    NAME_RE,
    ImportDecision,
    ImportedEntry,
    ImportEntry,
    ImportPreview,
    ImportResult,
    ImportStatus,
    check_name,
    reserved,
)
from service.vault import UserVault, VaultDenied, VaultUnanswered, VaultUnavailable

from . import errors
from .claims import TOOK_OVER, lease, reclaim_name
from .compensation import compensate, restore, undo, undo_in_background
from .errors import database_error
from .user_vault import user_vault, vault_error, vault_failed

log = logging.getLogger("service")

# A request body (the JSON or the dashboard's form) above this is refused with a 413 before it is parsed.
# Under Starlette's 1 MiB spool threshold: an uploaded file is never written to a temporary file on disk.
MAX_BODY_BYTES = 512 * 1024
MAX_ENTRIES = 500
_NEWLINE = re.compile(r"\r\n|\n|\r")
UNPARSABLE = "cannot be parsed as NAME=value (an unclosed quote, or text after a closing quote?)"
NO_EQUALS = "has no '=' (a value that spans lines must be quoted)"


@dataclass(frozen=True)
class Parsed:
    line: int
    name: Optional[str]  # None where the line is not NAME=value: its text may be part of a value
    value: Optional[str] = field(repr=False)
    problem: str = ""


class ImportRefused(errors.InvalidField):
    """Entries or decisions that stop the import: each as (where, message), `where` under the body."""

    def __init__(self, problems: list[tuple[list, str]]):
        super().__init__("text", "; ".join(m for _, m in problems[:5]) + (" ..." if len(problems) > 5 else ""))
        self.problems = problems


def parse(text: str) -> list[Parsed]:
    """The entries of a .env text, each with the line its name is on; blank lines and comments skipped."""
    out = []
    for b in parse_stream(io.StringIO(text)):
        if b.key is None and not b.error:
            continue
        raw = b.original.string
        # A binding's line is where its leading blank lines start: the name is further down.
        line = b.original.line + len(_NEWLINE.findall(raw[:len(raw) - len(raw.lstrip())]))
        if b.error:
            out.append(Parsed(line, None, None, UNPARSABLE))
        elif b.value is None:
            out.append(Parsed(line, None, None, NO_EQUALS))
        else:
            out.append(Parsed(line, b.key, b.value))
    return out


def _shown(name: str) -> str:
    """A name as responses and pages show it: cut at the longest valid length, and encodable (JSON may
    carry lone surrogates, which no response can)."""
    name = name.encode("utf-8", "replace").decode("utf-8")
    return name if len(name) <= MAX_NAME else name[:MAX_NAME] + "…"


def _usable(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name)) and len(name) <= MAX_NAME


def _name_problem(name: str) -> tuple[ImportStatus, str]:
    """("new", "") for a usable name, else (status, why)."""
    if _usable(name) and reserved(name):
        return "reserved", "is reserved (it would change how a job runs)"
    try:
        check_name(name)
    except ValueError as e:
        return "invalid", f"name {e}"
    return "new", ""


def _value_problem(value: str, max_bytes: int) -> str:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "value is not valid Unicode text (a lone surrogate)"
    if size > max_bytes:
        return f"value is over {max_bytes} bytes (UTF-8), the limit of one value"
    if "\x00" in value:
        return "value contains a NUL character (an environment cannot hold one)"
    return ""


@dataclass
class Plan:
    parsed: list[Parsed]
    entries: list[ImportEntry]
    problems: list[tuple[list, str]]


def _existing(s: Session, who: Caller, names: set[str]) -> dict[str, str]:
    if not names:
        return {}
    rows = s.execute(select(EnvVar.name, EnvVar.id).where(EnvVar.owner == who.user, EnvVar.visible(),
                                                          EnvVar.name.in_(sorted(names)))).all()
    s.commit()  # ends the read: no transaction stays open across what follows
    return {n: i for n, i in rows}


def plan(s: Session, c: Components, who: Caller, text: str, decisions: dict[str, ImportDecision]) -> Plan:
    parsed = parse(text)
    if len(parsed) > MAX_ENTRIES:
        raise errors.InvalidField("text", f"has {len(parsed)} entries; an import takes at most {MAX_ENTRIES}")
    existing = _existing(s, who, {p.name for p in parsed if p.name and _usable(p.name)})
    entries: list[ImportEntry] = []
    problems: list[tuple[list, str]] = []
    first_line: dict[str, int] = {}
    for p in parsed:
        e = ImportEntry(line=p.line, name=_shown(p.name) if p.name is not None else None, status="new")
        if p.name is None:
            e.status, e.reason = "invalid", p.problem
        elif p.name in first_line:
            e.status, e.reason = "duplicate", f"is also on line {first_line[p.name]}"
        else:
            first_line[p.name] = p.line
            status, why = _name_problem(p.name)
            if not why:
                status, why = "invalid", _value_problem(p.value or "", c.settings.value_max_bytes)
            if why:
                e.status, e.reason = status, why
            elif p.name in existing:
                e.status, e.env_var_id, e.decision = "existing", existing[p.name], decisions.get(p.name)
        entries.append(e)
        if e.reason:
            problems.append((["text", e.line], f"line {e.line}: {e.name or 'the entry'} {e.reason}"))
        elif e.status == "existing" and e.decision is None:
            problems.append((["decisions", e.name],
                             f"line {e.line}: you already have {e.name}: choose skip or overwrite"))
    for name in sorted(set(decisions) - set(first_line)):
        problems.append((["decisions", _shown(name)], f"{_shown(name)} is not a name in this file"))
    if not parsed:
        problems.append((["text"], "has no NAME=value entries"))
    return Plan(parsed, entries, problems)


def preview(s: Session, c: Components, who: Caller, text: str,
            decisions: dict[str, ImportDecision]) -> ImportPreview:
    p = plan(s, c, who, text, decisions)
    return ImportPreview(entries=p.entries, ready=not p.problems, problems=[m for _, m in p.problems])


# --- apply ----------------------------------------------------------------------------------------

@dataclass
class _Step:
    line: int
    name: str
    value: str = field(repr=False)
    env_var_id: str
    kind: str  # "create" or "overwrite"
    previous: Optional[int] = None  # an overwritten value's version before this import
    attempted: bool = False  # its write was sent (it may have landed)
    version: int = 0  # the KV version its write made (named in its audit row: the value's history)


def apply(s: Session, c: Components, who: Caller, text: str, decisions: dict[str, ImportDecision]) -> ImportResult:
    p = plan(s, c, who, text, decisions)
    if p.problems:
        raise ImportRefused(p.problems)
    steps, skipped = [], []
    for parsed, e in zip(p.parsed, p.entries, strict=True):
        assert parsed.name is not None and parsed.value is not None  # noqa: S101 (no problems: every entry has both)
        if decisions.get(parsed.name) == "skip":  # an existing name, or one given a decision anyway
            skipped.append(ImportedEntry(line=e.line, name=parsed.name, env_var_id=e.env_var_id, action="skipped"))
        elif e.status == "existing":
            steps.append(_Step(e.line, parsed.name, parsed.value, e.env_var_id or "", "overwrite"))
        else:
            steps.append(_Step(e.line, parsed.name, parsed.value, str(uuid.uuid4()), "create"))
    import_id = str(uuid.uuid4())
    if steps:
        vault = user_vault(c, who)
        tokens = {"create": f"create:{import_id}", "overwrite": f"update:{import_id}"}
        _claim_all(s, c, who, steps, tokens, vault)
        _write_all(c, who, steps, tokens, vault, import_id)
        _finish(s, c, who, steps, tokens, vault, import_id, len(skipped))
    else:
        try:
            s.add(audit_row(who.user, "env_var.import", import_id, "ok", f"created=0 overwritten=0 skipped={len(skipped)}"))
            s.commit()
        except SQLAlchemyError as err:
            s.rollback()
            raise database_error(err, "nothing was imported") from None
    done = [ImportedEntry(line=st.line, name=st.name, env_var_id=st.env_var_id,
                          action="created" if st.kind == "create" else "overwritten") for st in steps]
    entries = sorted(done + skipped, key=lambda x: x.line)
    return ImportResult(entries=entries, created=sum(st.kind == "create" for st in steps),
                        overwritten=sum(st.kind == "overwrite" for st in steps), skipped=len(skipped))


def _claim_all(s: Session, c: Components, who: Caller, steps: list[_Step], tokens: dict, vault: UserVault) -> None:
    """Inserts the new rows and claims the rows to overwrite, in one short transaction: all or none."""
    until = now() + lease(c)
    for attempt in (1, 2):
        try:
            for st in steps:
                if st.kind == "create":
                    s.add(EnvVar(id=st.env_var_id, owner=who.user, name=st.name, pending=tokens["create"],
                                 pending_until=until))
            s.flush()
            for st in steps:
                if st.kind == "overwrite" and not matched(s, update(EnvVar).where(
                        EnvVar.id == st.env_var_id, EnvVar.owner == who.user, EnvVar.visible(),
                        EnvVar.pending.is_(None) | (EnvVar.pending_until < now()))
                        .values(pending=tokens["overwrite"], pending_until=until)):
                    s.rollback()
                    raise errors.Busy(f"{st.name} is being changed by another request (or was deleted); "
                                      "nothing was imported: preview again and retry")
            s.commit()
            return
        except IntegrityError:
            s.rollback()
            # A name taken since the preview, maybe by a create whose request died: freed if so, once.
            names = [st.name for st in steps if st.kind == "create"]
            if attempt == 2 or not any([reclaim_name(s, who, n, vault, c) for n in names]):
                taken = s.scalars(select(EnvVar.name).where(EnvVar.owner == who.user, EnvVar.name.in_(names))).all()
                s.rollback()
                raise errors.NameTaken(f"you already have an env var named {', '.join(sorted(taken)) or 'one of these'} "
                                       "(created since the preview); nothing was imported") from None
        except SQLAlchemyError as err:
            s.rollback()
            raise database_error(err, "nothing was imported") from None


def _renew(c: Components, who: Caller, steps: list[_Step], tokens: dict) -> bool:
    """Extends every claim of this import; False when one was lost (its lease ran out and another change
    took the row over)."""
    try:
        with c.sessions() as s, s.begin():
            renewed = matched(s, update(EnvVar).where(EnvVar.owner == who.user,
                                                      EnvVar.pending.in_(list(tokens.values())))
                              .values(pending_until=now() + lease(c)))
    except SQLAlchemyError:
        return True  # the database failed: the claims may still be held; the final transaction decides
    return renewed == len(steps)


def _write_all(c: Components, who: Caller, steps: list[_Step], tokens: dict, vault: UserVault,
               import_id: str) -> None:
    renew_every = lease(c).total_seconds() / 3
    renewed_at = time.monotonic()
    for st in steps:
        try:
            if st.kind == "overwrite":
                st.previous = vault.current_version(st.env_var_id)
            st.attempted = True
            st.version = vault.write(st.env_var_id, st.value)
        except (VaultUnavailable, VaultDenied) as err:
            vault_failed(c, who, "write", err)
            undone = sum(x.attempted for x in steps if x is not st)
            # A write refused is not there; one that got no answer may be, now or later: undone too.
            st.attempted = isinstance(err, VaultUnanswered)
            _undo(c, who, steps, vault, unanswered=st if st.attempted else None)
            _release(c, who, tokens)
            audit_failure(c.sessions, who.user, "env_var.import", import_id, "vault_error",
                          f"{type(err).__name__} at line {st.line}")
            raise vault_error(err, f"nothing was imported (the write of {st.name}, line {st.line}, failed; "
                                   f"the {undone} value(s) written before it were undone)") from None
        if time.monotonic() - renewed_at > renew_every:
            if not _renew(c, who, steps, tokens):
                _undo(c, who, steps, vault)
                _release(c, who, tokens)
                raise errors.Busy(f"nothing was imported: {TOOK_OVER}")
            renewed_at = time.monotonic()


def _finish(s: Session, c: Components, who: Caller, steps: list[_Step], tokens: dict, vault: UserVault,
            import_id: str, skipped: int) -> None:
    creates = [st for st in steps if st.kind == "create"]
    overwrites = [st for st in steps if st.kind == "overwrite"]
    try:
        t = now()
        done = matched(s, update(EnvVar).where(EnvVar.owner == who.user, EnvVar.pending == tokens["create"])
                       .values(pending=None, pending_until=None)) == len(creates)
        done = done and matched(s, update(EnvVar).where(EnvVar.owner == who.user,
                                                        EnvVar.pending == tokens["overwrite"])
                                .values(pending=None, pending_until=None, updated_at=t)) == len(overwrites)
        if done:
            for st in steps:
                made = f"import={import_id} {written(st.version)}"
                s.add(audit_row(who.user, "env_var.create", st.env_var_id, "ok", f"name={st.name} {made}")
                      if st.kind == "create" else
                      audit_row(who.user, "env_var.update", st.env_var_id, "ok", f"value {made}"))
            s.add(audit_row(who.user, "env_var.import", import_id, "ok",
                            f"created={len(creates)} overwritten={len(overwrites)} skipped={skipped}"))
            s.commit()
        else:
            s.rollback()
    except SQLAlchemyError as err:
        s.rollback()
        _undo(c, who, steps, vault)
        _release(c, who, tokens)
        raise database_error(err, "nothing was imported (the values written were undone)") from None
    if not done:  # a claim ran out while Vault was slow and another change took its row over
        _undo(c, who, steps, vault)
        _release(c, who, tokens)
        raise errors.Busy(f"nothing was imported: {TOOK_OVER}")


def _undo(c: Components, who: Caller, steps: list[_Step], vault: UserVault, unanswered: Optional[_Step] = None) -> None:
    """The Vault half of this import undone: new values destroyed, overwritten ones given back their
    previous value (a new version holding it, as an update's compensation does). A write that got no
    answer may land later: a new one is destroyed until it is surely gone."""
    for st in steps:
        if not st.attempted:
            continue
        if st.kind == "create":
            undo(vault, st.env_var_id, c)
            if st is unanswered:
                undo_in_background(vault, st.env_var_id, c)
        elif st.previous is not None:
            compensate(lambda i, v=st.previous: restore(c, who, vault, i, v), st.env_var_id, c)
        else:  # the row had no value in Vault (drift the check reports): it has none again
            undo(vault, st.env_var_id, c)
    log.info(json.dumps({"event": "import_undone", "user": vault.user,
                         "values": sum(st.attempted for st in steps)}))


def _release(c: Components, who: Caller, tokens: dict) -> None:
    """Ends the claims of a failed import: its new rows deleted, the others released. If the database
    fails too, the leases run out instead (a new row claimed by a create is then freed by the next create
    of its name)."""
    try:
        with c.sessions() as s, s.begin():
            matched(s, delete(EnvVar).where(EnvVar.owner == who.user, EnvVar.pending == tokens["create"]))
            matched(s, update(EnvVar).where(EnvVar.owner == who.user, EnvVar.pending == tokens["overwrite"])
                    .values(pending=None, pending_until=None))
    except SQLAlchemyError as err:
        log.warning(json.dumps({"event": "claim_not_released", "import": True, "error": type(err).__name__}))


def admit_import(c: Components, who: Caller) -> None:
    """The import's own per-user rate limit (one request may write hundreds of values), on top of the
    per-user limit every request passes."""
    retry = c.import_rate_limit.check(who.user)
    if retry is not None:
        c.metrics.rate_limited.inc()
        raise errors.RateLimited(retry)
