"""What the API's and the dashboard's routes both depend on: the service's components (on app.state) and
a database session for the request. Each adapter adds its own caller (api/deps.py, ui/routes.py)."""
from typing import Annotated, Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.components import Components


def components(request: Request) -> Components:
    return request.app.state.components


ComponentsDep = Annotated[Components, Depends(components)]


def db(c: ComponentsDep) -> Iterator[Session]:
    with c.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(db)]
