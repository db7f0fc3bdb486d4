"""/dashboard: env-var management and job pages over the service's own operations (service/core: the
API's validation, consistency between the database and Vault, and audit rows); pages add the OIDC login,
an encrypted session cookie and a CSRF token on every form. Values go in (POST bodies) and never come out."""
import datetime
import hmac
import re
import secrets
import shlex
import time
import urllib.parse
from dataclasses import dataclass
from typing import Annotated, Optional, get_args

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.auth import Caller, Unauthenticated
from service.components import Components
from service.core.callers import admit
from service.core.env_vars import create_env_var, delete_env_var, get_env_var, list_env_vars, update_env_var
from service.core.errors import CannotRerun, InvalidField, NameTaken, NotFound
from service.core.executions import get_execution, list_executions, rerun_execution, start_execution
from service.dependencies import ComponentsDep, SessionDep
from service.schemas import EnvVarCreate, EnvVarUpdate, ExecutionCreate, ExecutionRerun, ExecutionStatus

from .oidc import IdentityProviderError, LoginAttempt
from .pages import HOME, render
from .session import LOGIN_COOKIE, SESSION_COOKIE

router = APIRouter(prefix="/dashboard", include_in_schema=False)
PAGE_SIZE = 50
LOGIN_MAX_SECONDS = 600
SESSION_MAX_SECONDS = 12 * 3600  # and never past the ID token's own expiry
FormText = Annotated[str, Form()]
JOB_STATUSES: tuple[str, ...] = get_args(ExecutionStatus)


class LoginRequired(Exception):
    """No valid session: the app sends the browser to the login, then back to `next_path`."""

    def __init__(self, next_path: str):
        self.next_path = next_path


@dataclass(frozen=True)
class Viewer:
    who: Caller
    csrf: str
    name: str


def viewer(request: Request, c: ComponentsDep) -> Viewer:
    data = c.cookies.load(request.cookies.get(SESSION_COOKIE), SESSION_MAX_SECONDS)
    next_path = request.url.path + (f"?{request.url.query}" if request.url.query and request.method == "GET" else "")
    if not data:
        raise LoginRequired(next_path)
    try:
        claims = c.verifier.claims(data["t"])
    except Unauthenticated:
        raise LoginRequired(next_path) from None
    return Viewer(admit(c, Caller(claims["sub"], data["t"])), data["c"], data["n"])


ViewerDep = Annotated[Viewer, Depends(viewer)]
CSRF_REFUSED = "This form has expired or was not sent by this dashboard. Reload the page and try again."


def check_csrf(expected: str, token: str) -> None:
    if not hmac.compare_digest(expected.encode(), (token or "").encode()):
        raise HTTPException(403, CSRF_REFUSED)


def _cookie_args(c: Components, request: Request) -> dict:
    return {"httponly": True, "samesite": "lax", "secure": _base_url(c, request).startswith("https://"),
            "path": "/dashboard"}


def _base_url(c: Components, request: Request) -> str:
    return c.settings.public_url or str(request.base_url).rstrip("/")


def _redirect_uri(c: Components, request: Request) -> str:
    return f"{_base_url(c, request)}/dashboard/callback"


def _safe_next(path: Optional[str]) -> str:
    """Only a path of this dashboard: never an open redirect."""
    if path and re.fullmatch(r"/dashboard(/[A-Za-z0-9._~\-/]*)?(\?[^\\\s]*)?", path) and "//" not in path:
        return path
    return HOME


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


# --- login ----------------------------------------------------------------------------------------

@router.get("")
def dashboard_home() -> Response:
    return RedirectResponse(HOME, 303)


@router.get("/login")
def login(request: Request, c: ComponentsDep, next: str = "") -> Response:  # noqa: A002
    attempt = LoginAttempt.new()
    try:
        target = c.oidc.authorization_redirect(attempt, _redirect_uri(c, request))
    except IdentityProviderError as e:
        return render(request, "message.html", 503, title="Sign-in is unavailable", message=str(e),
                      link=("Try again", "/dashboard/login"))
    response = RedirectResponse(target, 303)
    response.set_cookie(LOGIN_COOKIE, c.cookies.dump({"s": attempt.state, "n": attempt.nonce, "v": attempt.verifier,
                                                      "next": _safe_next(next)}),
                        max_age=LOGIN_MAX_SECONDS, **_cookie_args(c, request))
    return response


@router.get("/callback")
def callback(request: Request, c: ComponentsDep, code: str = "", state: str = "", error: str = "") -> Response:
    started = c.cookies.load(request.cookies.get(LOGIN_COOKIE), LOGIN_MAX_SECONDS)
    again = ("Sign in again", "/dashboard/login")
    if error:
        reason = re.sub(r"[^a-z_]", "", error.lower())[:64]  # an error code, never the provider's free text
        return render(request, "message.html", 401, title="Sign-in refused",
                      message=f"The identity provider refused the sign-in ({reason}).", link=again)
    if not started or not code or not hmac.compare_digest(started["s"].encode(), state.encode()):
        return render(request, "message.html", 400, title="Sign-in expired",
                      message="This sign-in took too long or was started in another window.", link=again)
    attempt = LoginAttempt(started["s"], started["n"], started["v"])
    try:
        id_token = c.oidc.exchange(code, attempt, _redirect_uri(c, request))
        claims = c.verifier.claims(id_token)
    except IdentityProviderError as e:
        return render(request, "message.html", 502, title="Sign-in failed", message=str(e), link=again)
    except Unauthenticated as e:
        return render(request, "message.html", 401, title="Sign-in failed", message=f"The ID token was refused: {e}.",
                      link=again)
    if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), attempt.nonce.encode()):
        return render(request, "message.html", 401, title="Sign-in failed",
                      message="The ID token was not issued for this sign-in.", link=again)
    name = str(claims.get("preferred_username") or claims.get("email") or claims["sub"])[:128]
    response = RedirectResponse(_safe_next(started.get("next")), 303)
    max_age = max(1, min(SESSION_MAX_SECONDS, int(claims["exp"] - time.time())))
    response.set_cookie(SESSION_COOKIE, c.cookies.dump({"t": id_token, "c": secrets.token_urlsafe(32), "n": name}),
                        max_age=max_age, **_cookie_args(c, request))
    response.delete_cookie(LOGIN_COOKIE, path="/dashboard")
    return response


@router.post("/logout")
def logout(request: Request, c: ComponentsDep, csrf_token: FormText = "") -> Response:
    data = c.cookies.load(request.cookies.get(SESSION_COOKIE), SESSION_MAX_SECONDS)
    if data:
        check_csrf(data["c"], csrf_token)
    response = RedirectResponse("/dashboard/signed-out", 303)
    response.delete_cookie(SESSION_COOKIE, **_cookie_args(c, request))
    return response


@router.get("/signed-out")
def signed_out(request: Request) -> Response:
    return render(request, "message.html", title="Signed out", message="You are signed out of the dashboard.",
                  link=("Sign in", "/dashboard/login"))


# --- env vars -------------------------------------------------------------------------------------

EXPIRING_DAYS = 7  # the list's "expiring soon" filter, as the metric's window


@router.get("/env-vars")
def env_var_list(request: Request, v: ViewerDep, s: SessionDep, q: str = "", page: int = 1, created: str = "",
                 updated: str = "", deleted: str = "", expiring: str = "") -> Response:
    q, page = q.strip()[:128], max(1, min(page, 100_000))
    expiring = "1" if expiring else ""  # any value turns the filter on
    result = list_env_vars(s, v.who, q, PAGE_SIZE, (page - 1) * PAGE_SIZE, EXPIRING_DAYS if expiring else None)
    notice = (f"Created {created}." if created else f"Saved {updated}." if updated else
              f"Deleted {deleted}." if deleted else "")
    return render(request, "env_vars.html", v=v, items=result.items, total=result.total, q=q, page=page,
                  pages=max(1, -(-result.total // PAGE_SIZE)), notice=notice[:200], expiring=expiring,
                  expiring_days=EXPIRING_DAYS, now=datetime.datetime.now(datetime.timezone.utc))


def expiry_input(t: Optional[datetime.datetime]) -> str:
    """An expiry as the form's datetime-local input shows it: UTC, to the minute."""
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M") if t else ""


def parse_expiry(text: str) -> datetime.datetime | None:
    """The form's expiry: empty for none; a date and time without a zone is UTC (the form says so)."""
    text = text.strip()
    if not text:
        return None
    try:
        t = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be a date and time, e.g. 2030-01-31T12:00") from None
    return t if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)


@router.get("/env-vars/new")
def env_var_new(request: Request, v: ViewerDep) -> Response:
    return render(request, "env_var_form.html", v=v, item=None, name="", description="", expires_at="", errors={})


@router.post("/env-vars/new")
def env_var_create(request: Request, v: ViewerDep, s: SessionDep, c: ComponentsDep, name: FormText = "",
                   description: FormText = "", value: FormText = "", expires_at: FormText = "",
                   csrf_token: FormText = "") -> Response:
    check_csrf(v.csrf, csrf_token)
    errors = {} if value else {"value": "is required"}
    try:
        expiry = parse_expiry(expires_at)
    except ValueError as e:
        expiry, errors["expires_at"] = None, str(e)
    try:
        body = EnvVarCreate(name=name, description=description, value=value, expires_at=expiry)
    except ValidationError as e:
        errors = {**field_errors(e.errors()), **errors}
    if not errors:
        try:
            create_env_var(s, c, v.who, body)
            return RedirectResponse(f"{HOME}?{urllib.parse.urlencode({'created': name})}", 303)
        except InvalidField as e:
            errors = refused_field(e)
        except NameTaken:
            errors = {"name": "you already have an env var with this name"}
    # The value is never sent back: the user types it again.
    return render(request, "env_var_form.html", 422, v=v, item=None, name=name, description=description,
                  expires_at=expires_at, errors=errors)


@router.get("/env-vars/{env_var_id}")
def env_var_edit(request: Request, env_var_id: str, v: ViewerDep, s: SessionDep) -> Response:
    item = get_env_var(s, v.who, env_var_id)
    return render(request, "env_var_form.html", v=v, item=item, name=item.name, description=item.description,
                  expires_at=expiry_input(item.expires_at), errors={})


@router.post("/env-vars/{env_var_id}")
def env_var_update(request: Request, env_var_id: str, v: ViewerDep, s: SessionDep, c: ComponentsDep,
                   description: FormText = "", value: FormText = "", expires_at: FormText = "",
                   csrf_token: FormText = "") -> Response:
    check_csrf(v.csrf, csrf_token)
    item = get_env_var(s, v.who, env_var_id)
    try:
        # The expiry only when changed: an unchanged past one must not block saving a description.
        expiry = {} if expires_at.strip() == expiry_input(item.expires_at) else {"expires_at": parse_expiry(expires_at)}
    except ValueError as e:
        errors = {"expires_at": str(e)}
    else:
        try:
            body = EnvVarUpdate(description=description, value=value or None, **expiry)  # empty value: kept
            update_env_var(s, c, v.who, env_var_id, body)
            return RedirectResponse(f"{HOME}?{urllib.parse.urlencode({'updated': item.name})}", 303)
        except ValidationError as e:
            errors = field_errors(e.errors())
        except InvalidField as e:
            errors = refused_field(e)
    return render(request, "env_var_form.html", 422, v=v, item=item, name=item.name, description=description,
                  expires_at=expires_at, errors=errors)


@router.get("/env-vars/{env_var_id}/delete")
def env_var_confirm_delete(request: Request, env_var_id: str, v: ViewerDep, s: SessionDep) -> Response:
    return render(request, "confirm_delete.html", v=v, item=get_env_var(s, v.who, env_var_id))


@router.post("/env-vars/{env_var_id}/delete")
def env_var_delete(env_var_id: str, v: ViewerDep, s: SessionDep, c: ComponentsDep,
                   csrf_token: FormText = "") -> Response:
    check_csrf(v.csrf, csrf_token)
    name = get_env_var(s, v.who, env_var_id).name
    delete_env_var(s, c, v.who, env_var_id)
    return RedirectResponse(f"{HOME}?{urllib.parse.urlencode({'deleted': name})}", 303)


# --- jobs -----------------------------------------------------------------------------------------

def _job_form(request: Request, v: Viewer, s: Session, status_code: int = 200, **values) -> Response:
    choices = list_env_vars(s, v.who, "", 1000, 0).items
    values = {"command": "", "timeout": "", "selected": [], "errors": {}, **values}
    return render(request, "execution_new.html", status_code, v=v, env_vars=choices,
                  recent=list_executions(s, v.who, None, 20, 0).items, **values)


@router.get("/executions")
def execution_list(request: Request, v: ViewerDep, s: SessionDep, status: str = "", page: int = 1) -> Response:
    if status not in JOB_STATUSES:
        status = ""  # an unknown filter shows every job, as the filter's "any" does
    page = max(1, min(page, 100_000))
    result = list_executions(s, v.who, status or None, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    return render(request, "executions.html", v=v, items=result.items, total=result.total, status=status,
                  statuses=JOB_STATUSES, page=page, pages=max(1, -(-result.total // PAGE_SIZE)))


@router.get("/executions/new")
def execution_new(request: Request, v: ViewerDep, s: SessionDep) -> Response:
    return _job_form(request, v, s)


@router.post("/executions/new")
def execution_start(request: Request, v: ViewerDep, s: SessionDep, c: ComponentsDep, command: FormText = "",
                    timeout: FormText = "", env_var_ids: Annotated[list[str], Form()] = [],  # noqa: B006
                    csrf_token: FormText = "") -> Response:
    check_csrf(v.csrf, csrf_token)
    errors: dict[str, str] = {}
    try:
        argv = shlex.split(command)
    except ValueError as e:
        argv, errors["command"] = [], f"cannot be split into arguments: {e}"
    if not argv and "command" not in errors:
        errors["command"] = "is required"
    if timeout.strip() and not (timeout.strip().isascii() and timeout.strip().isdigit()):  # "²" is a digit
        errors["timeout_seconds"] = "must be a whole number of seconds"
    if not errors:
        try:
            body = ExecutionCreate(command=argv, env_var_ids=env_var_ids,
                                   timeout_seconds=int(timeout) if timeout.strip() else None)
            started = start_execution(s, c, v.who, body)
            return RedirectResponse(f"/dashboard/executions/{started.id}", 303)
        except ValidationError as e:
            errors = field_errors(e.errors())
        except InvalidField as e:
            errors = refused_field(e)
        except NotFound:
            errors = {"env_var_ids": "one of the selected env vars no longer exists"}
    return _job_form(request, v, s, 422, command=command, timeout=timeout, selected=env_var_ids, errors=errors)


@router.get("/executions/{execution_id}")
def execution_status(request: Request, execution_id: str, v: ViewerDep, s: SessionDep) -> Response:
    return _job_page(request, v, get_execution(s, v.who, execution_id))


def _job_page(request: Request, v: Viewer, execution, status_code: int = 200, rerun_error: str = "") -> Response:
    return render(request, "execution.html", status_code, v=v, execution=execution,
                  command=shlex.join(execution.command), running=execution.status in ("queued", "running"),
                  rerun_error=rerun_error)


@router.post("/executions/{execution_id}/rerun")
def execution_rerun(request: Request, execution_id: str, v: ViewerDep, s: SessionDep, c: ComponentsDep,
                    versions: FormText = "latest", csrf_token: FormText = "") -> Response:
    check_csrf(v.csrf, csrf_token)
    try:
        body = ExecutionRerun(versions=versions)  # type: ignore[arg-type]  # checked here
    except ValidationError:
        raise HTTPException(422, "versions must be same or latest") from None
    try:
        started = rerun_execution(s, c, v.who, execution_id, body)
    except CannotRerun as e:  # shown on the job's page, by the control that was used
        return _job_page(request, v, get_execution(s, v.who, execution_id), 409, rerun_error=str(e))
    return RedirectResponse(f"/dashboard/executions/{started.id}", 303)
