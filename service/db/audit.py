"""The audit trail: who did what to which target, and how it ended. Never a value."""
import json
import logging
from typing import Callable, Optional

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.db import AuditEvent

log = logging.getLogger("service")
SERVICE = "service"  # the actor of a write the service made on its own (undoing a failed change)


def audit_row(actor: str, action: str, target: str, outcome: str, detail: str = "") -> AuditEvent:
    """An audit row to add to a successful operation's own transaction."""
    return AuditEvent(actor=actor, action=action, target=target, outcome=outcome, detail=detail[:512])


def written(version: int, copied_from: Optional[int] = None, user: str = "") -> str:
    """The detail of a value write's audit row: the KV version it made, so the versions of a value can
    name who wrote each (service/core/versions.py); a rollback or restore adds the version it copied, a
    restore the user whose change it undid."""
    return " ".join([f"version={version}"] + ([f"from={copied_from}"] if copied_from else [])
                    + ([f"for={user}"] if user else []))


def audit(sessions: Callable[[], Session], actor: str, action: str, target: str, outcome: str,
          detail: str = "") -> None:
    """An audit row in its own transaction, for failed operations (their own transaction rolled back)."""
    with sessions() as s, s.begin():
        s.add(audit_row(actor, action, target, outcome, detail))


def audit_failure(sessions: Callable[[], Session], actor: str, action: str, target: str, outcome: str,
                  detail: str = "") -> None:
    """The audit row of a failure; the database failing too must not hide what the caller is told."""
    try:
        audit(sessions, actor, action, target, outcome, detail)
    except SQLAlchemyError as err:
        log.warning(json.dumps({"event": "audit_not_written", "action": action, "error": type(err).__name__}))
