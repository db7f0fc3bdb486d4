"""Errors as API responses. A domain error: its status (service/http_errors.py), its message as `detail`,
Retry-After when it advises a retry. A refused field: listed by field like a request that failed
validation, and neither ever carries the rejected input."""
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service.core import errors
from service.http_errors import STATUS, retry_headers


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
