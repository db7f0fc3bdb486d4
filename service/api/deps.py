"""What the routes depend on: the service's components (on app.state), a database session for the request,
and for API routes the caller, authenticated by its Bearer token and admitted (service/core/admission.py).
The dashboard's routes share the first two and add their own caller (service/ui/deps.py).

The dependencies are `async`: FastAPI runs a plain `def` dependency in its thread pool, and each trip there
and back costs a request more than the work itself (bench/service_bench.py)."""
from typing import Annotated, AsyncIterator

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.auth import Caller, Unauthenticated
from service.components import Components
from service.core.admission import admit


async def components(request: Request) -> Components:
    return request.app.state.components


ComponentsDep = Annotated[Components, Depends(components)]


async def db(c: ComponentsDep) -> AsyncIterator[Session]:
    session = c.sessions()  # no I/O: it connects on first use, in the route's thread
    try:
        yield session
    finally:
        # Closing gives the connection back to the pool, with a rollback: a round trip to a database
        # server (in the thread pool), a function call into SQLite (here).
        if session.in_transaction() and not c.embedded_database:
            await run_in_threadpool(session.close)
        else:
            session.close()


SessionDep = Annotated[Session, Depends(db)]


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
