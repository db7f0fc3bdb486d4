"""Who is let in: a verified caller, unless its id collides with another user's or it is over the
per-user rate limit. The API and the dashboard share both checks."""
from service.auth import Caller
from service.auth.identities import IdentityCollision
from service.components import Components

from . import errors


def admit(c: Components, who: Caller) -> Caller:
    try:
        c.identities.admit(who.user)
    except IdentityCollision as e:
        raise errors.IdentityCollision(str(e)) from None
    retry = c.rate_limit.check(who.user)
    if retry is not None:
        c.metrics.rate_limited.inc()
        raise errors.RateLimited(retry)
    return who
