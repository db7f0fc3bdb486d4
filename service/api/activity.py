"""/api/v2/user/activity: the caller's own audit trail, newest first (service/core/activity.py)."""
from typing import Annotated

from fastapi import APIRouter, Query

from service.core import activity
from service.schemas import ActivityList

from .deps import CallerDep, SessionDep

router = APIRouter(prefix="/api/v2/user/activity", tags=["activity"])


@router.get("", response_model=ActivityList)
def list_activity(who: CallerDep, s: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                  offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> ActivityList:
    """What you did, newest first: env var changes (with the env var's id and name), imports, jobs and the
    env vars each was given, dashboard sign-ins and sign-ins Vault refused. Never a value; never another
    user's."""
    return activity.list_activity(s, who, limit, offset)
