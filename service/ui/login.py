"""/dashboard/login, /callback, /logout: the OIDC sign-in (code flow with PKCE, service/auth/oidc.py) that
puts the ID token in an encrypted session cookie, and the sign-out."""
import hmac
import re
import secrets
import time
from typing import Optional

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from service.api.deps import ComponentsDep
from service.auth import Unauthenticated
from service.auth.oidc import IdentityProviderError, LoginAttempt
from service.auth.session import LOGIN_COOKIE, SESSION_COOKIE
from service.components import Components
from service.db.audit import audit_failure

from .deps import SESSION_MAX_SECONDS, FormText, check_csrf
from .pages import HOME, render

router = APIRouter(prefix="/dashboard", include_in_schema=False)
LOGIN_MAX_SECONDS = 600


def _cookie_args(c: Components, request: Request) -> dict:
    secure = c.settings.secure_cookies or _base_url(c, request).startswith("https://")
    return {"httponly": True, "samesite": "lax", "secure": secure, "path": "/dashboard"}


def _base_url(c: Components, request: Request) -> str:
    return c.settings.public_url or str(request.base_url).rstrip("/")


def _redirect_uri(c: Components, request: Request) -> str:
    return f"{_base_url(c, request)}/dashboard/callback"


def _safe_next(path: Optional[str]) -> str:
    """Only a path of this dashboard: never an open redirect."""
    if path and re.fullmatch(r"/dashboard(/[A-Za-z0-9._~\-/]*)?(\?[^\\\s]*)?", path) and "//" not in path:
        return path
    return HOME


@router.get("")
def dashboard_home() -> Response:
    return RedirectResponse(HOME, 303)


@router.get("/login")
def login(request: Request, c: ComponentsDep, next: str = "") -> Response:  # noqa: A002
    attempt = LoginAttempt.new()
    try:
        target = c.oidc.authorization_redirect(attempt, _redirect_uri(c, request))
    except IdentityProviderError as e:
        return render(request, "message.html", 503, title="Sign-in is unavailable", message=str(e),
                      link=("Try again", "/dashboard/login"))
    response = RedirectResponse(target, 303)
    response.set_cookie(LOGIN_COOKIE, c.cookies.dump({"s": attempt.state, "n": attempt.nonce, "v": attempt.verifier,
                                                      "next": _safe_next(next)}),
                        max_age=LOGIN_MAX_SECONDS, **_cookie_args(c, request))
    return response


@router.get("/callback")
def callback(request: Request, c: ComponentsDep, code: str = "", state: str = "", error: str = "") -> Response:
    started = c.cookies.load(request.cookies.get(LOGIN_COOKIE), LOGIN_MAX_SECONDS)
    again = ("Sign in again", "/dashboard/login")
    if error:
        reason = re.sub(r"[^a-z_]", "", error.lower())[:64]  # an error code, never the provider's free text
        return render(request, "message.html", 401, title="Sign-in refused",
                      message=f"The identity provider refused the sign-in ({reason}).", link=again)
    if not started or not code or not hmac.compare_digest(started["s"].encode(), state.encode()):
        return render(request, "message.html", 400, title="Sign-in expired",
                      message="This sign-in took too long or was started in another window.", link=again)
    attempt = LoginAttempt(started["s"], started["n"], started["v"])
    try:
        id_token = c.oidc.exchange(code, attempt, _redirect_uri(c, request))
    except IdentityProviderError as e:
        return render(request, "message.html", 502, title="Sign-in failed", message=str(e), link=again)
    try:
        claims = c.verifier.claims(id_token)
    except Unauthenticated as e:
        c.metrics.auth_failed(e.reason)
        _signed_in(c, c.verifier.signed_subject(id_token), "refused", str(e))
        return render(request, "message.html", 401, title="Sign-in failed", message=f"The ID token was refused: {e}.",
                      link=again)
    if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), attempt.nonce.encode()):
        _signed_in(c, claims["sub"], "refused", "the ID token was not issued for this sign-in (nonce)")
        return render(request, "message.html", 401, title="Sign-in failed",
                      message="The ID token was not issued for this sign-in.", link=again)
    _signed_in(c, claims["sub"], "ok")
    name = str(claims.get("preferred_username") or claims.get("email") or claims["sub"])[:128]
    response = RedirectResponse(_safe_next(started.get("next")), 303)
    max_age = max(1, min(SESSION_MAX_SECONDS, int(claims["exp"] - time.time())))
    response.set_cookie(SESSION_COOKIE, c.cookies.dump({"t": id_token, "c": secrets.token_urlsafe(32), "n": name}),
                        max_age=max_age, **_cookie_args(c, request))
    response.delete_cookie(LOGIN_COOKIE, path="/dashboard")
    return response


def _signed_in(c: Components, sub: Optional[str], outcome: str, detail: str = "") -> None:
    """A dashboard sign-in in the user's activity: done, or refused with a token the issuer signed for them
    (its subject is known). A token whose signature is not trusted names no one."""
    if sub:
        audit_failure(c.sessions, sub, "sign_in.dashboard", "", outcome, detail)


@router.post("/logout")
def logout(request: Request, c: ComponentsDep, csrf_token: FormText = "") -> Response:
    data = c.cookies.load(request.cookies.get(SESSION_COOKIE), SESSION_MAX_SECONDS)
    if data:
        check_csrf(data["c"], csrf_token)
    response = RedirectResponse("/dashboard/signed-out", 303)
    response.delete_cookie(SESSION_COOKIE, **_cookie_args(c, request))
    return response


@router.get("/signed-out")
def signed_out(request: Request) -> Response:
    return render(request, "message.html", title="Signed out", message="You are signed out of the dashboard.",
                  link=("Sign in", "/dashboard/login"))
