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
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from service.api.deps import ComponentsDep, SessionDep
from service.auth import Caller, Unauthenticated
from service.auth.oidc import IdentityProviderError, LoginAttempt
from service.auth.session import LOGIN_COOKIE, SESSION_COOKIE
from service.components import Components
from service.core import dynamic_env_vars, env_import, leaks
from service.core.activity import list_activity
from service.core.admission import admit
from service.core.env_vars import create_env_var, delete_env_var, get_env_var, list_env_vars, update_env_var
from service.core.errors import CannotRerun, InvalidField, NameTaken, NotFound, RoleNotGranted, VaultRefused, VaultUnavailable
from service.core.executions import get_execution, list_executions, rerun_execution, start_execution
from service.core.versions import list_versions, rollback
from service.db.audit import audit_failure
from service.request_body import read_capped
from service.schemas import EnvVarCreate, EnvVarOut, EnvVarUpdate, ExecutionCreate, ExecutionRerun, ExecutionStatus

from .pages import HOME, render

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
    except Unauthenticated as e:  # most often a session outliving its token: counted, then a fresh sign-in
        c.metrics.auth_failed(e.reason)
        raise LoginRequired(next_path) from None
    return Viewer(admit(c, Caller(claims["sub"], data["t"])), data["c"], data["n"])


ViewerDep = Annotated[Viewer, Depends(viewer)]
CSRF_REFUSED = "This form has expired or was not sent by this dashboard. Reload the page and try again."


def check_csrf(expected: str, token: str) -> None:
    if not hmac.compare_digest(expected.encode(), (token or "").encode()):
        raise HTTPException(403, CSRF_REFUSED)


def _cookie_args(c: Components, request: Request) -> dict:
    secure = c.settings.secure_cookies or _base_url(c, request).startswith("https://")
    return {"httponly": True, "samesite": "lax", "secure": secure, "path": "/dashboard"}


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
    except IdentityProviderError as e:
        return render(request, "message.html", 502, title="Sign-in failed", message=str(e), link=again)
    try:
        claims = c.verifier.claims(id_token)
    except Unauthenticated as e:
        c.metrics.auth_failed(e.reason)
        _signed_in(c, c.verifier.signed_subject(id_token), "refused", str(e))
        return render(request, "message.html", 401, title="Sign-in failed", message=f"The ID token was refused: {e}.",
                      link=again)
    if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), attempt.nonce.encode()):
        _signed_in(c, claims["sub"], "refused", "the ID token was not issued for this sign-in (nonce)")
        return render(request, "message.html", 401, title="Sign-in failed",
                      message="The ID token was not issued for this sign-in.", link=again)
    _signed_in(c, claims["sub"], "ok")
    name = str(claims.get("preferred_username") or claims.get("email") or claims["sub"])[:128]
    response = RedirectResponse(_safe_next(started.get("next")), 303)
    max_age = max(1, min(SESSION_MAX_SECONDS, int(claims["exp"] - time.time())))
    response.set_cookie(SESSION_COOKIE, c.cookies.dump({"t": id_token, "c": secrets.token_urlsafe(32), "n": name}),
                        max_age=max_age, **_cookie_args(c, request))
    response.delete_cookie(LOGIN_COOKIE, path="/dashboard")
    return response


def _signed_in(c: Components, sub: Optional[str], outcome: str, detail: str = "") -> None:
    """A dashboard sign-in in the user's activity: done, or refused with a token the issuer signed for them
    (its subject is known). A token whose signature is not trusted names no one."""
    if sub:
        audit_failure(c.sessions, sub, "sign_in.dashboard", "", outcome, detail)


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
                 updated: str = "", deleted: str = "", imported: str = "", expiring: str = "") -> Response:
    q, page = q.strip()[:128], max(1, min(page, 100_000))
    expiring = "1" if expiring else ""  # any value turns the filter on
    result = list_env_vars(s, v.who, q, PAGE_SIZE, (page - 1) * PAGE_SIZE, EXPIRING_DAYS if expiring else None)
    counts = re.fullmatch(r"(\d{1,4})-(\d{1,4})-(\d{1,4})", imported)
    notice = (f"Created {created}." if created else f"Saved {updated}." if updated else
              f"Deleted {deleted}." if deleted else
              "Imported the .env file: {} created, {} overwritten, {} skipped.".format(*counts.groups()) if counts
              else "")
    return render(request, "env_vars.html", v=v, items=result.items, total=result.total, q=q, page=page,
                  compromised=leaks.compromised(s, v.who),
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


def _edit_page(request: Request, v: Viewer, s: Session, c: Components, item: EnvVarOut, status_code: int = 200,
               **values) -> Response:
    """The edit form and the value's history panel. Vault failing to list the versions leaves the form usable."""
    try:
        history, history_error = list_versions(s, c, v.who, item.id), ""
    except (VaultUnavailable, VaultRefused) as e:
        history, history_error = None, f"The history cannot be shown now: {e}"
    values = {"name": item.name, "description": item.description, "expires_at": expiry_input(item.expires_at),
              "errors": {}, "notice": "", "rotate_error": "", **values}
    exposed = leaks.compromised(s, v.who, item.id)
    return render(request, "env_var_form.html", status_code, v=v, item=item, history=history,
                  compromised=exposed[0] if exposed else None,
                  history_error=history_error, **values)


@router.get("/env-vars/{env_var_id}")
def env_var_edit(request: Request, env_var_id: str, v: ViewerDep, s: SessionDep, c: ComponentsDep,
                 rolled_back: str = "", version: str = "", rotated: str = "") -> Response:
    item = get_env_var(s, v.who, env_var_id)
    notice = (f"Rolled back to version {rolled_back}: its value is now the current version, {version}."
              if (rolled_back + version).isascii() and rolled_back.isdecimal() and version.isdecimal() else
              f"Rotated: a new value is saved; versions {rotated} are marked compromised."
              if re.fullmatch(r"\d{1,6}(,\d{1,6}){0,20}", rotated) else "")
    return _edit_page(request, v, s, c, item, notice=notice[:200])


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
    return _edit_page(request, v, s, c, item, 422, description=description, expires_at=expires_at, errors=errors)


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


def _version_number(text: str) -> int:
    """A version from a query or form field (the dashboard's own links and forms send a positive number)."""
    text = text.strip()
    if not (text.isascii() and text.isdecimal()) or not 1 <= int(text) < 2**31:
        raise InvalidField("version", "must be a version number (1 or more)")
    return int(text)


@router.get("/env-vars/{env_var_id}/rollback")
def env_var_confirm_rollback(request: Request, env_var_id: str, v: ViewerDep, s: SessionDep, c: ComponentsDep,
                             version: str = "") -> Response:
    item = get_env_var(s, v.who, env_var_id)
    try:
        number = _version_number(version)
        history = list_versions(s, c, v.who, item.id)
        chosen = next((x for x in history.items if x.version == number and x.restorable), None)
        if chosen is None:
            raise InvalidField("version", f"version {number} cannot be rolled back to: it is current, no longer "
                                          "kept, deleted or destroyed")
    except InvalidField as e:
        return _edit_page(request, v, s, c, item, 422, rollback_error=str(e))
    return render(request, "confirm_rollback.html", v=v, item=item, chosen=chosen, current=history.current_version)


@router.post("/env-vars/{env_var_id}/rollback")
def env_var_rollback(request: Request, env_var_id: str, v: ViewerDep, s: SessionDep, c: ComponentsDep,
                     version: FormText = "", csrf_token: FormText = "") -> Response:
    check_csrf(v.csrf, csrf_token)
    item = get_env_var(s, v.who, env_var_id)
    try:
        done = rollback(s, c, v.who, item.id, _version_number(version))
    except InvalidField as e:
        return _edit_page(request, v, s, c, item, 422, rollback_error=str(e))
    query = urllib.parse.urlencode({"rolled_back": done.rolled_back_from, "version": done.version})
    return RedirectResponse(f"/dashboard/env-vars/{item.id}?{query}", 303)


# --- jobs -----------------------------------------------------------------------------------------

def _job_form(request: Request, v: Viewer, s: Session, status_code: int = 200, **values) -> Response:
    choices = list_env_vars(s, v.who, "", 1000, 0).items
    values = {"command": "", "timeout": "", "selected": [], "errors": {}, **values}
    return render(request, "execution_new.html", status_code, v=v, env_vars=choices,
                  dynamic_env_vars=dynamic_env_vars.list_mine(s, v.who).items,
                  recent=list_executions(s, v.who, None, 20, 0).items,
                  now=datetime.datetime.now(datetime.timezone.utc), **values)


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
                    dynamic_env_var_ids: Annotated[list[str], Form()] = [],  # noqa: B006
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
            body = ExecutionCreate(command=argv, env_var_ids=env_var_ids, dynamic_env_var_ids=dynamic_env_var_ids,
                                   timeout_seconds=int(timeout) if timeout.strip() else None)
            started = start_execution(s, c, v.who, body)
            return RedirectResponse(f"/dashboard/executions/{started.id}", 303)
        except ValidationError as e:
            errors = field_errors(e.errors())
        except InvalidField as e:
            errors = refused_field(e)
        except NotFound:
            errors = {"env_var_ids": "one of the selected env vars no longer exists"}
        except RoleNotGranted as e:
            errors = {"dynamic_env_var_ids": str(e)}
    return _job_form(request, v, s, 422, command=command, timeout=timeout,
                     selected=env_var_ids + dynamic_env_var_ids, errors=errors)


@router.get("/executions/{execution_id}")
def execution_status(request: Request, execution_id: str, v: ViewerDep, s: SessionDep) -> Response:
    return _job_page(request, v, s, get_execution(s, v.who, execution_id))


def _job_page(request: Request, v: Viewer, s: Session, execution, status_code: int = 200,
              rerun_error: str = "") -> Response:
    return render(request, "execution.html", status_code, v=v, execution=execution,
                  findings=leaks.list_findings(s, v.who, None, execution.id, 100, 0)["items"],
                  command=shlex.join(execution.command), running=execution.status in ("queued", "running"),
                  rerun_error=rerun_error)


@router.post("/executions/{execution_id}/rerun")
def execution_rerun(request: Request, execution_id: str, v: ViewerDep, s: SessionDep, c: ComponentsDep,
                    versions: FormText = "latest", allow_compromised: FormText = "", csrf_token: FormText = "") -> Response:
    check_csrf(v.csrf, csrf_token)
    try:  # allow_compromised: the explicit override of a version a leak exposed (a checkbox)
        body = ExecutionRerun(versions=versions, allow_compromised=bool(allow_compromised))  # type: ignore[arg-type]
    except ValidationError:
        raise HTTPException(422, "versions must be same or latest") from None
    try:
        started = rerun_execution(s, c, v.who, execution_id, body)
    except (CannotRerun, RoleNotGranted) as e:  # shown on the job's page, by the control that was used
        return _job_page(request, v, s, get_execution(s, v.who, execution_id), 409, rerun_error=str(e))
    return RedirectResponse(f"/dashboard/executions/{started.id}", 303)


# --- .env import ----------------------------------------------------------------------------------
# The pasted text (or uploaded file) is never rendered back: values appear in no page. With scripts,
# Preview and Import are sent by dashboard.js and only the preview section of the answer is swapped in,
# so the text stays in the form the user filled; without them, the preview page asks for it again.

@dataclass
class ImportForm:
    text: str
    decisions: dict
    errors: dict[str, str]


async def _import_form(request: Request, v: Viewer, c: Components) -> ImportForm:
    env_import.admit_import(c, v.who)
    await read_capped(request, env_import.MAX_BODY_BYTES)  # the form parser then reads it from memory
    async with request.form(max_files=1, max_fields=env_import.MAX_ENTRIES + 8,
                            max_part_size=env_import.MAX_BODY_BYTES) as form:
        check_csrf(v.csrf, str(form.get("csrf_token") or ""))
        errors: dict[str, str] = {}
        pasted = form.get("text")
        text = pasted.replace("\r\n", "\n") if isinstance(pasted, str) else ""  # a textarea is sent with CR LF
        upload = form.get("file")
        raw = await upload.read() if isinstance(upload, UploadFile) else b""
        if raw and text.strip():
            errors["form"] = "paste the file or upload it, not both"
        elif raw:
            try:
                text = raw.decode("utf-8")  # bytes as they are: a file keeps its line breaks
            except UnicodeDecodeError:
                errors["file"] = "must be UTF-8 text"
        elif not text.strip():
            errors["text"] = "paste a .env file or choose one to upload"
        decisions = {}
        for key, choice in form.multi_items():
            if key.startswith("decision.") and choice in ("skip", "overwrite"):
                decisions[key.removeprefix("decision.")] = choice
    return ImportForm(text, decisions, errors)


def _import_page(request: Request, v: Viewer, status_code: int = 200, **values) -> Response:
    values = {"preview": None, "errors": {}, "again": False, **values}
    return render(request, "env_import.html", status_code, v=v, max_entries=env_import.MAX_ENTRIES,
                  max_kib=env_import.MAX_BODY_BYTES // 1024, **values)


def _preview(c: Components, who: Caller, form: ImportForm):
    with c.sessions() as s:
        return env_import.preview(s, c, who, form.text, form.decisions)


def _apply(c: Components, who: Caller, form: ImportForm):
    with c.sessions() as s:
        return env_import.apply(s, c, who, form.text, form.decisions)


@router.get("/import")
def import_page(request: Request, v: ViewerDep) -> Response:
    return _import_page(request, v)


@router.post("/import/preview")
async def import_preview(request: Request, v: ViewerDep, c: ComponentsDep) -> Response:
    form = await _import_form(request, v, c)
    if form.errors:
        return _import_page(request, v, 422, errors=form.errors)
    try:
        preview = await run_in_threadpool(_preview, c, v.who, form)
    except InvalidField as e:
        return _import_page(request, v, 422, errors=refused_field(e))
    return _import_page(request, v, preview=preview, again=True)


@router.post("/import")
async def import_apply(request: Request, v: ViewerDep, c: ComponentsDep) -> Response:
    form = await _import_form(request, v, c)
    if form.errors:
        return _import_page(request, v, 422, errors=form.errors)
    try:
        result = await run_in_threadpool(_apply, c, v.who, form)
    except env_import.ImportRefused:
        # The same check as the preview's: each refused entry and undecided name, in its row.
        preview = await run_in_threadpool(_preview, c, v.who, form)
        return _import_page(request, v, 422, preview=preview, again=True,
                            errors={"form": "Nothing was imported: see the entries below."})
    except InvalidField as e:
        return _import_page(request, v, 422, errors=refused_field(e))
    done = f"{result.created}-{result.overwritten}-{result.skipped}"
    return RedirectResponse(f"{HOME}?{urllib.parse.urlencode({'imported': done})}", 303)


# --- activity -------------------------------------------------------------------------------------

ACTIONS = {"env_var.create": "Created", "env_var.update": "Changed", "env_var.delete": "Deleted",
           "env_var.import": "Imported a .env file", "execution.start": "Started a job",
           "execution.run": "Job received its env vars", "execution.cancel": "Cancelled a job",
           "execution.credential_issued": "Credential issued for", "execution.credential_revoked": "Credential revoked for",
           "sign_in.dashboard": "Dashboard sign-in", "sign_in.vault": "Vault sign-in"}


@router.get("/activity")
def activity_page(request: Request, v: ViewerDep, s: SessionDep, page: int = 1) -> Response:
    page = max(1, min(page, 100_000))
    result = list_activity(s, v.who, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    return render(request, "activity.html", v=v, items=result.items, total=result.total, page=page,
                  pages=max(1, -(-result.total // PAGE_SIZE)), actions=ACTIONS)
