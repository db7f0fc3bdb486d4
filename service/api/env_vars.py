"""/api/v2/user/env-vars: the caller's env vars (service/core/env_vars.py). Values are write-only: no
route ever returns one."""
from typing import Annotated, Optional

from fastapi import APIRouter, Query, Response

from service.core import env_vars, versions
from service.schemas import EnvVarCreate, EnvVarList, EnvVarOut, EnvVarRollback, EnvVarRolledBack, EnvVarUpdate, EnvVarVersions

from .deps import CallerDep, ComponentsDep, SessionDep

router = APIRouter(prefix="/api/v2/user/env-vars", tags=["env-vars"])


@router.get("", response_model=EnvVarList)
def list_env_vars(who: CallerDep, s: SessionDep,
                  q: Annotated[str, Query(max_length=128, description="substring of the name or description")] = "",
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
                  expiring_within_days: Annotated[Optional[int], Query(
                      ge=0, le=3650, description="only env vars expiring within so many days, or expired")] = None,
                  ) -> Response:
    # Encoded by the core from the rows (the schema above documents it; tests check they agree).
    return Response(env_vars.list_env_vars_json(s, who, q, limit, offset, expiring_within_days),
                    media_type="application/json")


@router.post("", response_model=EnvVarOut, status_code=201)
def create_env_var(body: EnvVarCreate, who: CallerDep, s: SessionDep, c: ComponentsDep) -> EnvVarOut:
    return env_vars.create_env_var(s, c, who, body)


@router.get("/{env_var_id}", response_model=EnvVarOut)
def get_env_var(env_var_id: str, who: CallerDep, s: SessionDep) -> EnvVarOut:
    return env_vars.get_env_var(s, who, env_var_id)


@router.put("/{env_var_id}", response_model=EnvVarOut)
def update_env_var(env_var_id: str, body: EnvVarUpdate, who: CallerDep, s: SessionDep,
                   c: ComponentsDep) -> EnvVarOut:
    return env_vars.update_env_var(s, c, who, env_var_id, body)


@router.delete("/{env_var_id}", status_code=204)
def delete_env_var(env_var_id: str, who: CallerDep, s: SessionDep, c: ComponentsDep) -> Response:
    env_vars.delete_env_var(s, c, who, env_var_id)
    return Response(status_code=204)


@router.get("/{env_var_id}/versions", response_model=EnvVarVersions)
def list_versions(env_var_id: str, who: CallerDep, s: SessionDep, c: ComponentsDep) -> EnvVarVersions:
    """The kept KV versions of the value, newest first: when, by whom, deleted or destroyed; never a value."""
    return versions.list_versions(s, c, who, env_var_id)


@router.post("/{env_var_id}/rollback", response_model=EnvVarRolledBack)
def rollback(env_var_id: str, body: EnvVarRollback, who: CallerDep, s: SessionDep,
             c: ComponentsDep) -> EnvVarRolledBack:
    """The value of a kept older version becomes the newest version (copied inside the service, as the
    caller, in Vault). 422 naming `version` for one that does not exist, is current, pruned, deleted or
    destroyed."""
    return versions.rollback(s, c, who, env_var_id, body.version)
