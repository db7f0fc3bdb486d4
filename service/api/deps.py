"""What routes depend on: the service's components (on app.state) and the authenticated caller."""
import time
from dataclasses import dataclass
from typing import Callable, Optional

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.orm import Session, sessionmaker

from service.auth import Caller, TokenVerifier, Unauthenticated
from service.db import AuditEvent
from service.executor.runner import Executor
from service.identity import IdentityCollision, IdentityRegistry
from service.metrics import Metrics
from service.settings import Settings
from service.ui.oidc import OidcClient
from service.ui.session import CookieCodec
from service.vault_access import VaultGateway


class RateLimit:
    def __init__(self, spec: str):
        self._limit = parse(spec)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, user: str) -> Optional[int]:
        """None when allowed; else the seconds until the caller may retry."""
        if self._limiter.hit(self._limit, "user", user):
            return None
        reset, _ = self._limiter.get_window_stats(self._limit, "user", user)
        return max(1, int(reset - time.time()) + 1)


@dataclass
class Components:
    settings: Settings
    sessions: sessionmaker
    gateway: VaultGateway
    verifier: TokenVerifier
    executor: Executor
    metrics: Metrics
    rate_limit: RateLimit
    oidc: OidcClient  # the dashboard's login
    cookies: CookieCodec  # the dashboard's session
    identities: IdentityRegistry


def components(request: Request) -> Components:
    return request.app.state.components


def caller(request: Request, c: Components = Depends(components)) -> Caller:
    try:
        who = c.verifier.verify(request.headers.get("authorization", ""))
    except Unauthenticated as e:
        raise HTTPException(401, str(e), headers={"WWW-Authenticate": "Bearer"}) from None
    return rate_limited(who, c)


def rate_limited(who: Caller, c: Components) -> Caller:
    """The caller, unless its id collides with another user's (403) or it is over the per-user rate limit
    (429): the API and the dashboard share both checks."""
    try:
        c.identities.admit(who.user)
    except IdentityCollision as e:
        raise HTTPException(403, str(e)) from None
    retry = c.rate_limit.check(who.user)
    if retry is not None:
        c.metrics.rate_limited.inc()
        raise HTTPException(429, "too many requests", headers={"Retry-After": str(retry)})
    return who


def db(c: Components = Depends(components)):
    with c.sessions() as session:
        yield session


def audit(sessions: Callable[[], Session], actor: str, action: str, target: str, outcome: str,
          detail: str = "") -> None:
    """An audit row in its own transaction, for failed operations (their own transaction rolled back)."""
    with sessions() as s, s.begin():
        s.add(audit_row(actor, action, target, outcome, detail))


def audit_row(actor: str, action: str, target: str, outcome: str, detail: str = "") -> AuditEvent:
    """An audit row to add to a successful operation's own transaction. Never a value."""
    return AuditEvent(actor=actor, action=action, target=target, outcome=outcome, detail=detail[:512])


def field_error(loc: tuple, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])
