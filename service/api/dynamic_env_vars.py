"""/api/v2/user/dynamic-env-vars: the caller's dynamic env vars (service/core/dynamic_env_vars.py):
declarations of a secrets engine role and the env vars its credentials fill; no route returns a value."""
from fastapi import APIRouter, Response

from service.core import dynamic_env_vars
from service.schemas import DynamicEnvVarCreate, DynamicEnvVarList, DynamicEnvVarOut

from .deps import CallerDep, ComponentsDep, SessionDep

router = APIRouter(prefix="/api/v2/user/dynamic-env-vars", tags=["dynamic-env-vars"])


@router.get("", response_model=DynamicEnvVarList)
def list_dynamic(who: CallerDep, s: SessionDep) -> DynamicEnvVarList:
    return dynamic_env_vars.list_mine(s, who)


@router.post("", response_model=DynamicEnvVarOut, status_code=201,
             responses={403: {"description": "Vault does not grant the caller the role (the message names it)"}})
def create_dynamic(body: DynamicEnvVarCreate, who: CallerDep, s: SessionDep, c: ComponentsDep) -> DynamicEnvVarOut:
    return dynamic_env_vars.create(s, c, who, body)


@router.get("/{dynamic_id}", response_model=DynamicEnvVarOut)
def get_dynamic(dynamic_id: str, who: CallerDep, s: SessionDep) -> DynamicEnvVarOut:
    return dynamic_env_vars.get(s, who, dynamic_id)


@router.delete("/{dynamic_id}", status_code=204)
def delete_dynamic(dynamic_id: str, who: CallerDep, s: SessionDep) -> Response:
    dynamic_env_vars.delete(s, who, dynamic_id)
    return Response(status_code=204)
