"""/dashboard/executions: start a job with env vars (stored and dynamic), follow it, rerun it, as the API's
execution routes do (service/core/executions.py)."""
import datetime
import shlex
from typing import Annotated, get_args

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.api.deps import ComponentsDep, SessionDep
from service.core import dynamic_env_vars, leaks
from service.core.env_vars import list_env_vars
from service.core.errors import CannotRerun, InvalidField, NotFound, RoleNotGranted
from service.core.executions import get_execution, list_executions, rerun_execution, start_execution
from service.schemas import ExecutionCreate, ExecutionRerun, ExecutionStatus

from .deps import FormText, Viewer, ViewerDep, check_csrf
from .pages import PAGE_SIZE, field_errors, refused_field, render

router = APIRouter(prefix="/dashboard", include_in_schema=False)
JOB_STATUSES: tuple[str, ...] = get_args(ExecutionStatus)


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
