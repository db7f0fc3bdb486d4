"""What API routes depend on, besides the shared components and session (service/dependencies.py): the
caller, authenticated by its Bearer token and admitted (service/core/callers.py)."""
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from service.auth import Caller, Unauthenticated
from service.components import Components
from service.core.callers import admit
from service.dependencies import ComponentsDep


async def caller(request: Request, c: ComponentsDep) -> Caller:
    """On the event loop when the token was accepted lately and its user admitted already (memory only);
    a signature check (maybe a fetch of the issuer's keys) or a first admission (a database write) goes to
    the thread pool."""
    authorization = request.headers.get("authorization", "")
    who = c.verifier.remembered(authorization)
    if who is None or not c.identities.known(who.user):
        return await run_in_threadpool(_verified, c, authorization)
    return admit(c, who)


def _verified(c: Components, authorization: str) -> Caller:
    try:
        who = c.verifier.verify(authorization)
    except Unauthenticated as e:
        c.metrics.auth_failed(e.reason)
        raise HTTPException(401, str(e), headers={"WWW-Authenticate": "Bearer"}) from None
    return admit(c, who)


CallerDep = Annotated[Caller, Depends(caller)]
