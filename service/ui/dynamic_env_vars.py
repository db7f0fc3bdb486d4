"""/dashboard/dynamic-env-vars: declare a dynamic env var (a database role and the env vars its credential
fills, one `NAME=template` per line), list and delete them. Jobs select them on the job form like stored
env vars (service/ui/executions.py)."""
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from service.api.deps import ComponentsDep, SessionDep
from service.core import dynamic_env_vars
from service.core.errors import NameTaken, NotFound, RoleNotGranted, VaultRefused, VaultUnavailable
from service.schemas import DynamicEnvVarCreate

from .deps import FormText, ViewerDep, check_csrf
from .pages import field_errors, render

router = APIRouter(prefix="/dashboard", include_in_schema=False)
EXAMPLE = "PGUSER={{username}}\nPGPASSWORD={{password}}"


def parse_env(text: str) -> dict[str, str]:
    """`NAME=template` lines (blank lines skipped); a line without `=` is kept whole as a name, which the
    request's validation then refuses, naming it."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            name, _, template = line.partition("=")
            env[name.strip()] = template.strip()
    return env


def _page(request: Request, v, s, c, status_code: int = 200, **values) -> Response:
    values = {"name": "", "role": "", "env": EXAMPLE, "description": "", "errors": {}, **values}
    return render(request, "dynamic_env_vars.html", status_code, v=v, items=dynamic_env_vars.list_mine(s, v.who).items,
                  grace=c.settings.dynamic_lease_grace_seconds, **values)


@router.get("/dynamic-env-vars")
def dynamic_list(request: Request, v: ViewerDep, s: SessionDep, c: ComponentsDep) -> Response:
    return _page(request, v, s, c)


@router.post("/dynamic-env-vars")
def dynamic_create(request: Request, v: ViewerDep, s: SessionDep, c: ComponentsDep, name: FormText = "",
                   role: FormText = "", env: FormText = "", description: FormText = "",
                   csrf_token: FormText = "") -> Response:
    check_csrf(v.csrf, csrf_token)
    form = dict(name=name, role=role, env=env, description=description)
    try:
        body = DynamicEnvVarCreate(name=name, role=role, env=parse_env(env), description=description)
        dynamic_env_vars.create(s, c, v.who, body)
    except ValidationError as e:
        return _page(request, v, s, c, 422, errors=field_errors(e.errors()), **form)
    except RoleNotGranted as e:
        return _page(request, v, s, c, 403, errors={"role": str(e)}, **form)
    except NameTaken as e:
        return _page(request, v, s, c, 409, errors={"name": str(e)}, **form)
    except (VaultRefused, VaultUnavailable) as e:
        return _page(request, v, s, c, 503, errors={"form": str(e)}, **form)
    return RedirectResponse("/dashboard/dynamic-env-vars", 303)


@router.post("/dynamic-env-vars/{dynamic_id}/delete")
def dynamic_delete(dynamic_id: str, v: ViewerDep, s: SessionDep, csrf_token: FormText = "") -> Response:
    check_csrf(v.csrf, csrf_token)
    try:
        dynamic_env_vars.delete(s, v.who, dynamic_id)
    except NotFound:
        pass  # gone already: the list shows it
    return RedirectResponse("/dashboard/dynamic-env-vars", 303)
