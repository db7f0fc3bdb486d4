"""The dashboard's pages: its templates, the page that tells an error (a domain error's status from
service/api/errors.py, with its own message), and a form's errors by field."""
import os
from typing import Mapping, Optional

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from service.api.errors import STATUS, retry_headers
from service.core.errors import DomainError, InvalidField

templates = Jinja2Templates(directory=os.path.join(os.path.dirname(__file__), "templates"))
HOME = "/dashboard/env-vars"
PAGE_SIZE = 50
TITLES = {403: "Not allowed", 404: "Not found", 429: "Slow down", 503: "Unavailable"}  # others: "Error"


def render(request: Request, template: str, status_code: int = 200, headers: Optional[Mapping[str, str]] = None,
           **context) -> Response:
    return templates.TemplateResponse(request, template, context, status_code=status_code, headers=headers)


def domain_error_page(request: Request, exc: DomainError) -> Response:
    return _message(request, STATUS[type(exc)], str(exc), retry_headers(exc))


def http_error_page(request: Request, exc: HTTPException) -> Response:
    """A refused form (CSRF) or a page that does not exist."""
    return _message(request, exc.status_code, str(exc.detail), exc.headers)


def _message(request: Request, status_code: int, message: str, headers: Optional[Mapping[str, str]]) -> Response:
    return render(request, "message.html", status_code, title=TITLES.get(status_code, "Error"), message=message,
                  link=("Back to your env vars", HOME), headers=headers)


def field_errors(errors: list) -> dict[str, str]:
    """Validation errors by field name, in the API's words (never the rejected input)."""
    out: dict[str, str] = {}
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        field = loc[0] if loc else "form"
        msg = str(e.get("msg", "is invalid")).removeprefix("Value error, ")
        if e.get("type") == "string_too_short" and "at least 1" in msg:
            msg = "is required"
        out.setdefault(field, msg)
    return out


def refused_field(e: InvalidField) -> dict[str, str]:
    """A field an operation refused (none: the form as a whole), for the form's error slots."""
    return {e.field or "form": str(e)}
