"""/api/v2/execution: start a job with some of the caller's env vars, list the caller's jobs, follow one,
cancel it, run it again (service/core/executions.py)."""
from typing import Annotated, Optional

from fastapi import APIRouter, Body, Query

from service.core import executions
from service.schemas import ExecutionCreate, ExecutionList, ExecutionOut, ExecutionRerun, ExecutionStatus

from .deps import CallerDep, ComponentsDep, SessionDep

router = APIRouter(prefix="/api/v2/execution", tags=["executions"])


@router.post("", response_model=ExecutionOut, status_code=202)
def start_execution(body: ExecutionCreate, who: CallerDep, s: SessionDep, c: ComponentsDep) -> ExecutionOut:
    return executions.start_execution(s, c, who, body)


@router.get("", response_model=ExecutionList)
def list_executions(who: CallerDep, s: SessionDep,
                    status: Annotated[Optional[ExecutionStatus], Query(description="only executions in it")] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> ExecutionList:
    """The caller's executions, newest first, without their output."""
    return executions.list_executions(s, who, status, limit, offset)


@router.get("/{execution_id}", response_model=ExecutionOut)
def get_execution(execution_id: str, who: CallerDep, s: SessionDep) -> ExecutionOut:
    return executions.get_execution(s, who, execution_id)


@router.post("/{execution_id}/cancel", response_model=ExecutionOut, status_code=202)
def cancel_execution(execution_id: str, who: CallerDep, s: SessionDep, c: ComponentsDep) -> ExecutionOut:
    return executions.cancel_execution(s, c, who, execution_id)


@router.post("/{execution_id}/rerun", response_model=ExecutionOut, status_code=202,
             responses={409: {"description": "an env var, or (versions: same) a version it used, is gone"}})
def rerun_execution(execution_id: str, who: CallerDep, s: SessionDep, c: ComponentsDep,
                    body: Annotated[Optional[ExecutionRerun], Body()] = None) -> ExecutionOut:
    """A new execution of the same command, timeout and env vars, with their newest values (`versions`:
    latest, the default) or exactly the KV versions this one received (same)."""
    return executions.rerun_execution(s, c, who, execution_id, body or ExecutionRerun())
