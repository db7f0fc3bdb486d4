"""Errors in HTTP. The status of each domain error, one table for the API's responses and the dashboard's
pages (a script and a browser are told the same), and the Retry-After of an error that advises a retry.
As API responses: a domain error with its status, its message as `detail`, Retry-After when it advises a
retry; a refused field listed by field like a request that failed validation. Neither ever carries the
rejected input."""
from typing import Optional

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service.core import errors

STATUS: dict[type[errors.DomainError], int] = {
    errors.NotFound: 404,
    errors.NameTaken: 409,
    errors.Busy: 409,
    errors.CannotRerun: 409,
    errors.InvalidField: 422,
    errors.VaultRefused: 403,
    errors.RoleNotGranted: 403,
    errors.IdentityCollision: 403,
    errors.RateLimited: 429,
    errors.VaultUnavailable: 503,
    errors.TimedOut: 503,
    errors.DatabaseBusy: 503,
    errors.DatabaseUnavailable: 503,
}


def retry_headers(exc: errors.DomainError) -> Optional[dict]:
    return None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}


def domain_error_response(exc: errors.DomainError) -> JSONResponse:
    if isinstance(exc, errors.InvalidField):
        loc = ["body", exc.field] if exc.field else ["body"]
        return _invalid([{"loc": loc, "msg": str(exc), "type": "value_error"}])
    return JSONResponse({"detail": str(exc)}, status_code=STATUS[type(exc)], headers=retry_headers(exc))


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    # Pydantic echoes the rejected input: a value must never come back in an error body.
    return _invalid([{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                     for e in exc.errors()])


def _invalid(problems: list[dict]) -> JSONResponse:
    return JSONResponse({"detail": problems}, status_code=422)
