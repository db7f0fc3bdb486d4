"""What can go wrong in an operation. Each error's message is the one users see (never a value or a
token); the adapters choose the status codes and the pages. The database's failures are told in the user's
words here too (database_error)."""
import json
import logging
from typing import Optional

from sqlalchemy.exc import OperationalError, SQLAlchemyError

log = logging.getLogger("service")


class DomainError(Exception):
    """An operation refused, or failed, with str(error) as what users are told."""

    retry_after: Optional[int] = None  # seconds to wait, when retrying is the advice


class NotFound(DomainError):
    """Nothing of the caller's by that id: someone else's looks exactly like an unknown one."""


class NameTaken(DomainError):
    """The caller already has an env var of that name."""


class Busy(DomainError):
    """Another change to the same env var holds it, or took it over: check and retry."""


class CannotRerun(DomainError):
    """An execution cannot run again as asked: one of its env vars, or the version of a value it received,
    is gone (the message names it)."""


class InvalidField(DomainError):
    """A field that the request's own validation cannot judge (a configured limit, the value's bytes);
    `field` None: the request as a whole."""

    def __init__(self, field: Optional[str], message: str):
        super().__init__(message)
        self.field = field


class VaultRefused(DomainError):
    """Vault refused the caller's token (revoked or expired): signing in again helps."""


class RoleNotGranted(DomainError):
    """Vault, asked as the caller, does not let them mint credentials of a secrets engine role."""


class VaultUnavailable(DomainError):
    """Vault is unreachable or sealed, erred, or did not answer in time."""


class TimedOut(DomainError):
    """The operation outlasted its claim's lease and was not done."""


class DatabaseBusy(DomainError):
    """A lock wait ran out: the database works, a retry soon should too."""

    retry_after = 1


class DatabaseUnavailable(DomainError):
    """The database failed."""


class IdentityCollision(DomainError):
    """The caller's id differs only in letter case from another user's (service/auth/identities.py)."""


class RateLimited(DomainError):
    """The caller is over the per-user rate limit."""

    def __init__(self, retry_after: int):
        super().__init__("too many requests")
        self.retry_after = retry_after


def lock_wait(err: SQLAlchemyError) -> bool:
    """SQLite's busy wait ran out, or PostgreSQL gave up a lock wait (lock_timeout, statement_timeout,
    a deadlock): the database works, it was busy."""
    orig = getattr(err, "orig", None)
    return isinstance(err, OperationalError) and (
        "database is locked" in str(orig) or getattr(orig, "sqlstate", None) in ("55P03", "57014", "40P01"))


def database_error(err: SQLAlchemyError, outcome: str = "") -> DomainError:
    """Busy (retry) or unavailable (logged, by the error's type only), with what became of the operation."""
    said = f"; {outcome}" if outcome else ""
    if lock_wait(err):
        return DatabaseBusy(f"the database is busy (a lock wait timed out){said}; retry")
    log.error(json.dumps({"event": "database_error", "error": type(err).__name__}))
    return DatabaseUnavailable(f"the database is unavailable{said}")
