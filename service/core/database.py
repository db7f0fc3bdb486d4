"""The database as the operations use it: conditional statements that tell how many rows they matched,
and its failures in the user's words."""
import json
import logging
from typing import cast

from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from . import errors

log = logging.getLogger("service")


def matched(s: Session, statement) -> int:
    """Runs a conditional UPDATE or DELETE; how many rows it matched. Loaded objects are not synchronised:
    the operations answer from the values they wrote."""
    result = s.execute(statement, execution_options={"synchronize_session": False})
    return cast(CursorResult, result).rowcount  # an UPDATE or DELETE: a cursor's result


def lock_wait(err: SQLAlchemyError) -> bool:
    """SQLite's busy wait ran out, or PostgreSQL gave up a lock wait (lock_timeout, statement_timeout,
    a deadlock): the database works, it was busy."""
    orig = getattr(err, "orig", None)
    return isinstance(err, OperationalError) and (
        "database is locked" in str(orig) or getattr(orig, "sqlstate", None) in ("55P03", "57014", "40P01"))


def database_error(err: SQLAlchemyError, outcome: str = "") -> errors.DomainError:
    """Busy (retry) or unavailable (logged, by the error's type only), with what became of the operation."""
    said = f"; {outcome}" if outcome else ""
    if lock_wait(err):
        return errors.DatabaseBusy(f"the database is busy (a lock wait timed out){said}; retry")
    log.error(json.dumps({"event": "database_error", "error": type(err).__name__}))
    return errors.DatabaseUnavailable(f"the database is unavailable{said}")
