"""What API routes depend on, besides the shared components and session (service/dependencies.py): the
caller, authenticated by its Bearer token and admitted (service/core/callers.py)."""
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from service.auth import Caller, Unauthenticated
from service.core.callers import admit
from service.dependencies import ComponentsDep


def caller(request: Request, c: ComponentsDep) -> Caller:
    try:
        who = c.verifier.verify(request.headers.get("authorization", ""))
    except Unauthenticated as e:
        c.metrics.auth_failed(e.reason)
        raise HTTPException(401, str(e), headers={"WWW-Authenticate": "Bearer"}) from None
    return admit(c, who)


CallerDep = Annotated[Caller, Depends(caller)]
