"""What the API's and the dashboard's routes both depend on: the service's components (on app.state) and
a database session for the request. Each adapter adds its own caller (api/deps.py, ui/routes.py).

Both are `async`: FastAPI runs a plain `def` dependency in its thread pool, and each trip there and back
costs a request more than the work itself (bench/service_bench.py)."""
from typing import Annotated, AsyncIterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.components import Components


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
