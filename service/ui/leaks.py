"""The dashboard's leak response (service/core/leaks.py, service/core/rotation.py): dismissing a finding as
a false positive (from the job's page) and rotating an env var (from its page). The pages that show them
are the env var list, an env var's page and a job's page (service/ui/env_vars.py, service/ui/executions.py,
templates/_leaks.html)."""
import urllib.parse

from fastapi import APIRouter, HTTPException
from fastapi.responses import RedirectResponse, Response
from starlette.requests import Request

from service.api.deps import ComponentsDep, SessionDep
from service.core import leaks, rotation
from service.core.env_vars import get_env_var
from service.core.errors import InvalidField

from .deps import FormText, ViewerDep, check_csrf
from .env_vars import edit_page

router = APIRouter(prefix="/dashboard", include_in_schema=False)


@router.post("/leaks/{finding_id}/dismiss")
def dismiss(finding_id: str, v: ViewerDep, s: SessionDep, reason: FormText = "", csrf_token: FormText = "") -> Response:
    check_csrf(v.csrf, csrf_token)
    reason = reason.strip()
    if not reason or len(reason) > 400:
        raise HTTPException(422, "Say why this is a false positive (up to 400 characters).")
    found = leaks.dismiss(s, v.who, finding_id, reason)
    return RedirectResponse(f"/dashboard/executions/{urllib.parse.quote(found['execution_id'])}", 303)


@router.post("/env-vars/{env_var_id}/rotate")
def rotate(request: Request, env_var_id: str, v: ViewerDep, s: SessionDep, c: ComponentsDep, value: FormText = "",
           csrf_token: FormText = "") -> Response:
    check_csrf(v.csrf, csrf_token)
    item = get_env_var(s, v.who, env_var_id)
    error = "" if value else "Type the new value."
    if not error:
        try:
            marked = rotation.rotate(s, c, v.who, item.id, value)
            return RedirectResponse(f"/dashboard/env-vars/{item.id}?rotated={','.join(map(str, marked))}", 303)
        except InvalidField as e:
            error = str(e)
    return edit_page(request, v, s, c, item, 422, rotate_error=error)
