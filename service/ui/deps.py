"""What the dashboard's routes depend on, besides the shared components and session (service/api/deps.py):
the viewer, signed in by an encrypted session cookie (service/auth/session.py) holding their ID token and
admitted (service/core/admission.py), and the CSRF token every form carries."""
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, HTTPException, Request

from service.api.deps import ComponentsDep
from service.auth import Caller, Unauthenticated
from service.auth.session import SESSION_COOKIE
from service.core.admission import admit

SESSION_MAX_SECONDS = 12 * 3600  # and never past the ID token's own expiry
FormText = Annotated[str, Form()]


class LoginRequired(Exception):
    """No valid session: the app sends the browser to the login, then back to `next_path`."""

    def __init__(self, next_path: str):
        self.next_path = next_path


@dataclass(frozen=True)
class Viewer:
    who: Caller
    csrf: str
    name: str


def viewer(request: Request, c: ComponentsDep) -> Viewer:
    data = c.cookies.load(request.cookies.get(SESSION_COOKIE), SESSION_MAX_SECONDS)
    next_path = request.url.path + (f"?{request.url.query}" if request.url.query and request.method == "GET" else "")
    if not data:
        raise LoginRequired(next_path)
    try:
        claims = c.verifier.claims(data["t"])
    except Unauthenticated as e:  # most often a session outliving its token: counted, then a fresh sign-in
        c.metrics.auth_failed(e.reason)
        raise LoginRequired(next_path) from None
    return Viewer(admit(c, Caller(claims["sub"], data["t"])), data["c"], data["n"])


ViewerDep = Annotated[Viewer, Depends(viewer)]
CSRF_REFUSED = "This form has expired or was not sent by this dashboard. Reload the page and try again."


def check_csrf(expected: str, token: str) -> None:
    if not hmac.compare_digest(expected.encode(), (token or "").encode()):
        raise HTTPException(403, CSRF_REFUSED)
