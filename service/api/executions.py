"""/api/v2/execution: start a job with some of the caller's env vars, follow it, cancel it
(service/core/executions.py)."""
from fastapi import APIRouter

from service.core import executions
from service.dependencies import ComponentsDep, SessionDep
from service.schemas import ExecutionCreate, ExecutionOut

from .deps import CallerDep

router = APIRouter(prefix="/api/v2/execution", tags=["executions"])


@router.post("", response_model=ExecutionOut, status_code=202)
def start_execution(body: ExecutionCreate, who: CallerDep, s: SessionDep, c: ComponentsDep) -> ExecutionOut:
    return executions.start_execution(s, c, who, body)


@router.get("/{execution_id}", response_model=ExecutionOut)
def get_execution(execution_id: str, who: CallerDep, s: SessionDep) -> ExecutionOut:
    return executions.get_execution(s, who, execution_id)


@router.post("/{execution_id}/cancel", response_model=ExecutionOut, status_code=202)
def cancel_execution(execution_id: str, who: CallerDep, s: SessionDep, c: ComponentsDep) -> ExecutionOut:
    return executions.cancel_execution(s, c, who, execution_id)
