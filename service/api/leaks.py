"""Leak findings and the response to them (service/core/leaks.py, service/core/rotation.py): the caller's
findings, dismissing one as a false positive, the compromised env vars with the jobs that exposed them, and
rotating one. Never a secret, never a hash."""
from typing import Annotated, Optional

from fastapi import APIRouter, Query

from service.core import leaks, rotation
from service.core.claims import owned
from service.leak_schemas import (
    CompromisedEnvVar,
    CompromisedList,
    EnvVarRotate,
    EnvVarRotated,
    LeakDismiss,
    LeakFindingList,
    LeakFindingOut,
    LeakStatus,
)

from .deps import CallerDep, ComponentsDep, SessionDep

router = APIRouter(tags=["leaks"])


@router.get("/api/v2/user/leaks", response_model=LeakFindingList)
def list_findings(who: CallerDep, s: SessionDep, status: Optional[LeakStatus] = None,
                  execution_id: Annotated[Optional[str], Query(max_length=64)] = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50,
                  offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> LeakFindingList:
    """The caller's findings, newest first: detector, line and masked excerpt, the env var they match."""
    return LeakFindingList.model_validate(leaks.list_findings(s, who, status, execution_id, limit, offset))


@router.post("/api/v2/user/leaks/{finding_id}/dismiss", response_model=LeakFindingOut)
def dismiss(finding_id: str, body: LeakDismiss, who: CallerDep, s: SessionDep) -> LeakFindingOut:
    """A false positive: who and why are kept, and its hash is not reported for the caller again."""
    return LeakFindingOut.model_validate(leaks.dismiss(s, who, finding_id, body.reason))


# Before env_vars' router: these paths are under its prefix.
@router.get("/api/v2/user/env-vars/compromised", response_model=CompromisedList)
def list_compromised(who: CallerDep, s: SessionDep) -> CompromisedList:
    """The caller's env vars with a possibly compromised or compromised version, and the jobs that exposed it."""
    return CompromisedList.model_validate({"items": leaks.compromised(s, who)})


@router.get("/api/v2/user/env-vars/{env_var_id}/compromised", response_model=Optional[CompromisedEnvVar])
def env_var_compromised(env_var_id: str, who: CallerDep, s: SessionDep) -> Optional[CompromisedEnvVar]:
    """One env var's compromised versions and the jobs that exposed them; null when none is."""
    row = owned(s, who, env_var_id)
    found = leaks.compromised(s, who, row.id)
    return CompromisedEnvVar.model_validate(found[0]) if found else None


@router.post("/api/v2/user/env-vars/{env_var_id}/rotate", response_model=EnvVarRotated)
def rotate(env_var_id: str, body: EnvVarRotate, who: CallerDep, s: SessionDep, c: ComponentsDep) -> EnvVarRotated:
    """A new value (a new KV version); the version that was current and every exposed one become compromised."""
    return EnvVarRotated(id=env_var_id, compromised_versions=rotation.rotate(s, c, who, env_var_id, body.value))
