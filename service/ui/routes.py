"""/dashboard: env-var management and job pages. Each action calls the API's own operation (same
validation, same consistency between the database and Vault, same audit rows); pages add the OIDC login,
an encrypted session cookie and a CSRF token on every form. Values go in (POST bodies) and never come out."""
import hmac
import os
import re
import secrets
import shlex
import time
import urllib.parse
from dataclasses import dataclass
from typing import Optional

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.api import env_vars as env_vars_api
from service.api import executions as executions_api
from service.api.deps import Components, components, db, rate_limited
from service.auth import Caller, Unauthenticated
from service.db import Execution
from service.schemas import EnvVarCreate, EnvVarUpdate, ExecutionCreate

from .oidc import IdentityProviderError, LoginAttempt
from .session import LOGIN_COOKIE, SESSION_COOKIE

router = APIRouter(prefix="/dashboard", include_in_schema=False)
templates = Jinja2Templates(directory=os.path.join(os.path.dirname(__file__), "templates"))
PAGE_SIZE = 50
LOGIN_MAX_SECONDS = 600
SESSION_MAX_SECONDS = 12 * 3600  # and never past the ID token's own expiry
HOME = "/dashboard/env-vars"


class LoginRequired(Exception):
    """No valid session: the app sends the browser to the login, then back to `next_path`."""

    def __init__(self, next_path: str):
        self.next_path = next_path


@dataclass(frozen=True)
class Viewer:
    who: Caller
    csrf: str
    name: str


def viewer(request: Request, c: Components = Depends(components)) -> Viewer:
    data = c.cookies.load(request.cookies.get(SESSION_COOKIE), SESSION_MAX_SECONDS)
    next_path = request.url.path + (f"?{request.url.query}" if request.url.query and request.method == "GET" else "")
    if not data:
        raise LoginRequired(next_path)
    try:
        claims = c.verifier.claims(data["t"])
    except Unauthenticated:
        raise LoginRequired(next_path) from None
    return Viewer(rate_limited(Caller(claims["sub"], data["t"]), c), data["c"], data["n"])


CSRF_REFUSED = "This form has expired or was not sent by this dashboard. Reload the page and try again."


def check_csrf(expected: str, token: str) -> None:
    if not hmac.compare_digest(expected.encode(), (token or "").encode()):
        raise HTTPException(403, CSRF_REFUSED)


def render(request: Request, template: str, status_code: int = 200, headers: Optional[dict] = None,
           **context) -> Response:
    return templates.TemplateResponse(request, template, context, status_code=status_code, headers=headers)


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


# --- login ----------------------------------------------------------------------------------------

@router.get("")
def dashboard_home() -> Response:
    return RedirectResponse(HOME, 303)


@router.get("/login")
def login(request: Request, next: str = "", c: Components = Depends(components)) -> Response:  # noqa: A002
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
def callback(request: Request, code: str = "", state: str = "", error: str = "",
             c: Components = Depends(components)) -> Response:
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
def logout(request: Request, csrf_token: str = Form(""), c: Components = Depends(components)) -> Response:
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

@router.get("/env-vars")
def env_var_list(request: Request, q: str = "", page: int = 1, created: str = "", updated: str = "",
                 deleted: str = "", v: Viewer = Depends(viewer), s: Session = Depends(db)) -> Response:
    q, page = q.strip()[:128], max(1, min(page, 100_000))
    result = env_vars_api.list_env_vars(q=q, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, who=v.who, s=s)
    notice = (f"Created {created}." if created else f"Saved {updated}." if updated else
              f"Deleted {deleted}." if deleted else "")
    return render(request, "env_vars.html", v=v, items=result.items, total=result.total, q=q, page=page,
                  pages=max(1, -(-result.total // PAGE_SIZE)), notice=notice[:200])


@router.get("/env-vars/new")
def env_var_new(request: Request, v: Viewer = Depends(viewer)) -> Response:
    return render(request, "env_var_form.html", v=v, item=None, name="", description="", errors={})


@router.post("/env-vars/new")
def env_var_create(request: Request, name: str = Form(""), description: str = Form(""), value: str = Form(""),
                   csrf_token: str = Form(""), v: Viewer = Depends(viewer), s: Session = Depends(db),
                   c: Components = Depends(components)) -> Response:
    check_csrf(v.csrf, csrf_token)
    errors = {} if value else {"value": "is required"}
    try:
        body = EnvVarCreate(name=name, description=description, value=value)
    except ValidationError as e:
        errors = {**field_errors(e.errors()), **errors}
    if not errors:
        try:
            env_vars_api.create_env_var(body, v.who, s, c)
            return RedirectResponse(f"{HOME}?{urllib.parse.urlencode({'created': name})}", 303)
        except RequestValidationError as e:
            errors = field_errors(e.errors())
        except HTTPException as e:
            if e.status_code != 409:
                raise
            errors = {"name": "you already have an env var with this name"}
    # The value is never sent back: the user types it again.
    return render(request, "env_var_form.html", 422, v=v, item=None, name=name, description=description,
                  errors=errors)


@router.get("/env-vars/{env_var_id}")
def env_var_edit(request: Request, env_var_id: str, v: Viewer = Depends(viewer), s: Session = Depends(db)) -> Response:
    item = env_vars_api.get_env_var(env_var_id, v.who, s)
    return render(request, "env_var_form.html", v=v, item=item, name=item.name, description=item.description,
                  errors={})


@router.post("/env-vars/{env_var_id}")
def env_var_update(request: Request, env_var_id: str, description: str = Form(""), value: str = Form(""),
                   csrf_token: str = Form(""), v: Viewer = Depends(viewer), s: Session = Depends(db),
                   c: Components = Depends(components)) -> Response:
    check_csrf(v.csrf, csrf_token)
    item = env_vars_api.get_env_var(env_var_id, v.who, s)
    try:
        body = EnvVarUpdate(description=description, value=value or None)  # an empty value keeps the old one
        env_vars_api.update_env_var(env_var_id, body, v.who, s, c)
        return RedirectResponse(f"{HOME}?{urllib.parse.urlencode({'updated': item.name})}", 303)
    except (ValidationError, RequestValidationError) as e:
        errors = field_errors(e.errors())
    return render(request, "env_var_form.html", 422, v=v, item=item, name=item.name, description=description,
                  errors=errors)


@router.get("/env-vars/{env_var_id}/delete")
def env_var_confirm_delete(request: Request, env_var_id: str, v: Viewer = Depends(viewer),
                           s: Session = Depends(db)) -> Response:
    return render(request, "confirm_delete.html", v=v, item=env_vars_api.get_env_var(env_var_id, v.who, s))


@router.post("/env-vars/{env_var_id}/delete")
def env_var_delete(env_var_id: str, csrf_token: str = Form(""), v: Viewer = Depends(viewer),
                   s: Session = Depends(db), c: Components = Depends(components)) -> Response:
    check_csrf(v.csrf, csrf_token)
    name = env_vars_api.get_env_var(env_var_id, v.who, s).name
    env_vars_api.delete_env_var(env_var_id, v.who, s, c)
    return RedirectResponse(f"{HOME}?{urllib.parse.urlencode({'deleted': name})}", 303)


# --- jobs -----------------------------------------------------------------------------------------

def _job_form(request: Request, v: Viewer, s: Session, status_code: int = 200, **values) -> Response:
    env_vars = env_vars_api.list_env_vars(q="", limit=1000, offset=0, who=v.who, s=s).items
    recent = s.scalars(select(Execution).where(Execution.owner == v.who.user)
                       .order_by(Execution.created_at.desc()).limit(20)).all()
    values = {"command": "", "timeout": "", "selected": [], "errors": {}, **values}
    return render(request, "execution_new.html", status_code, v=v, env_vars=env_vars, recent=recent, **values)


@router.get("/executions/new")
def execution_new(request: Request, v: Viewer = Depends(viewer), s: Session = Depends(db)) -> Response:
    return _job_form(request, v, s)


@router.post("/executions/new")
def execution_start(request: Request, command: str = Form(""), timeout: str = Form(""),
                    env_var_ids: list[str] = Form([]), csrf_token: str = Form(""), v: Viewer = Depends(viewer),
                    s: Session = Depends(db), c: Components = Depends(components)) -> Response:
    check_csrf(v.csrf, csrf_token)
    errors: dict[str, str] = {}
    try:
        argv = shlex.split(command)
    except ValueError as e:
        argv, errors["command"] = [], f"cannot be split into arguments: {e}"
    if not argv and "command" not in errors:
        errors["command"] = "is required"
    if timeout.strip() and not timeout.strip().isdigit():
        errors["timeout_seconds"] = "must be a whole number of seconds"
    if not errors:
        try:
            body = ExecutionCreate(command=argv, env_var_ids=env_var_ids,
                                   timeout_seconds=int(timeout) if timeout.strip() else None)
            started = executions_api.start_execution(body, v.who, s, c)
            return RedirectResponse(f"/dashboard/executions/{started.id}", 303)
        except (ValidationError, RequestValidationError) as e:
            errors = field_errors(e.errors())
        except HTTPException as e:
            if e.status_code != 404:
                raise
            errors = {"env_var_ids": "one of the selected env vars no longer exists"}
    return _job_form(request, v, s, 422, command=command, timeout=timeout, selected=env_var_ids, errors=errors)


@router.get("/executions/{execution_id}")
def execution_status(request: Request, execution_id: str, v: Viewer = Depends(viewer),
                     s: Session = Depends(db)) -> Response:
    execution = executions_api.get_execution(execution_id, v.who, s)
    return render(request, "execution.html", v=v, execution=execution, command=shlex.join(execution.command),
                  running=execution.status in ("queued", "running"))
