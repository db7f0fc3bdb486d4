"""/dashboard/env-vars: list, create, edit, delete and roll back env vars, as the API's env var routes do
(service/core/env_vars.py, service/core/versions.py). Values go in (POST bodies) and never come out."""
import datetime
import re
import urllib.parse
from typing import Optional

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.api.deps import ComponentsDep, SessionDep
from service.components import Components
from service.core import leaks
from service.core.env_vars import create_env_var, delete_env_var, get_env_var, list_env_vars, update_env_var
from service.core.errors import InvalidField, NameTaken, VaultRefused, VaultUnavailable
from service.core.versions import list_versions, rollback
from service.schemas import EnvVarCreate, EnvVarOut, EnvVarUpdate

from .deps import FormText, Viewer, ViewerDep, check_csrf
from .pages import HOME, PAGE_SIZE, field_errors, refused_field, render

router = APIRouter(prefix="/dashboard", include_in_schema=False)
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


def edit_page(request: Request, v: Viewer, s: Session, c: Components, item: EnvVarOut, status_code: int = 200,
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
    return edit_page(request, v, s, c, item, notice=notice[:200])


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
    return edit_page(request, v, s, c, item, 422, description=description, expires_at=expires_at, errors=errors)


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
        return edit_page(request, v, s, c, item, 422, rollback_error=str(e))
    return render(request, "confirm_rollback.html", v=v, item=item, chosen=chosen, current=history.current_version)


@router.post("/env-vars/{env_var_id}/rollback")
def env_var_rollback(request: Request, env_var_id: str, v: ViewerDep, s: SessionDep, c: ComponentsDep,
                     version: FormText = "", csrf_token: FormText = "") -> Response:
    check_csrf(v.csrf, csrf_token)
    item = get_env_var(s, v.who, env_var_id)
    try:
        done = rollback(s, c, v.who, item.id, _version_number(version))
    except InvalidField as e:
        return edit_page(request, v, s, c, item, 422, rollback_error=str(e))
    query = urllib.parse.urlencode({"rolled_back": done.rolled_back_from, "version": done.version})
    return RedirectResponse(f"/dashboard/env-vars/{item.id}?{query}", 303)
