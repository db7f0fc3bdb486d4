"""Users are authenticated by OIDC/JWT bearer tokens verified against the issuer's keys (JWKS). Beside it:
the dashboard's OIDC sign-in (oidc.py) and session cookies (session.py), and one user id per Vault identity
(identities.py)."""
import hashlib
import re
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Optional

import jwt
from jwt import PyJWKClient

USER_RE = re.compile(r"[A-Za-z0-9._@-]{1,128}")


# Why a token was refused: the `reason` label of envvars_auth_failures_total, a fixed set (never the token,
# its subject or the library's message).
AUTH_FAILURE_REASONS = ("missing_token", "malformed", "unknown_key", "jwks_unavailable", "bad_signature",
                        "expired", "not_yet_valid", "wrong_audience", "wrong_issuer", "missing_claim",
                        "bad_subject", "invalid", "vault_login_refused", "vault_token_refused")


class Unauthenticated(Exception):
    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


def _reason(e: jwt.PyJWTError) -> str:
    # Subclasses first: InvalidSignatureError is a DecodeError, the connection error a PyJWKClientError.
    for kind, reason in ((jwt.PyJWKClientConnectionError, "jwks_unavailable"), (jwt.PyJWKClientError, "unknown_key"),
                         (jwt.InvalidSignatureError, "bad_signature"), (jwt.DecodeError, "malformed"),
                         (jwt.ExpiredSignatureError, "expired"), (jwt.ImmatureSignatureError, "not_yet_valid"),
                         (jwt.InvalidAudienceError, "wrong_audience"), (jwt.InvalidIssuerError, "wrong_issuer"),
                         (jwt.MissingRequiredClaimError, "missing_claim")):
        if isinstance(e, kind):
            return reason
    return "invalid"


@dataclass(frozen=True)
class Caller:
    user: str  # the token's `sub`: the user's identity here and in Vault
    token: str


# How long an accepted token is remembered (never past its `exp`): a signature does not change, and the
# issuer's keys themselves are cached for 300 s (PyJWKClient), so a key the issuer drops stops being
# honoured no later than it did before.
REMEMBER_SECONDS = 60
REMEMBER_MAX = 10_000


class TokenVerifier:
    def __init__(self, jwks_url: str, issuer: str, audience: str, ca_file: str = ""):
        ctx = ssl.create_default_context(cafile=ca_file or None)
        self._jwks = PyJWKClient(jwks_url, cache_keys=True, lifespan=300, ssl_context=ctx)
        self._issuer, self._audience = issuer, audience
        self._accepted: dict[str, tuple[float, Caller]] = {}  # sha256 of the header -> (until, caller)
        self._lock = threading.Lock()

    def verify(self, authorization: str) -> Caller:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("a Bearer token is required", "missing_token")
        claims = self.claims(token)
        who = Caller(user=claims["sub"], token=token)
        now = time.time()
        with self._lock:
            if len(self._accepted) >= REMEMBER_MAX:
                self._accepted = {k: v for k, v in self._accepted.items() if v[0] > now}
                if len(self._accepted) >= REMEMBER_MAX:
                    self._accepted.clear()
            self._accepted[_digest(authorization)] = (min(float(claims["exp"]), now + REMEMBER_SECONDS), who)
        return who

    def remembered(self, authorization: str) -> Optional[Caller]:
        """The caller of a header verify() accepted lately, while its token is unexpired; else None (verify
        it). No key fetch and no signature check: the request path's cheap way."""
        entry = self._accepted.get(_digest(authorization))
        return entry[1] if entry and entry[0] > time.time() else None

    def claims(self, token: str) -> dict:
        """The claims of a token signed by the issuer, for this audience, unexpired, with a usable `sub`."""
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"],
                                audience=self._audience, issuer=self._issuer,
                                options={"require": ["exp", "iat", "sub", "iss", "aud"]})
        except jwt.PyJWKClientError as e:
            raise Unauthenticated("the token's signing key is unknown", _reason(e)) from e
        except jwt.PyJWTError as e:
            raise Unauthenticated(f"invalid token: {type(e).__name__}", _reason(e)) from e
        claims["sub"] = str(claims["sub"])
        if not USER_RE.fullmatch(claims["sub"]):
            raise Unauthenticated("the token's subject is not a usable user id", "bad_subject")
        return claims

    def signed_subject(self, token: str) -> Optional[str]:
        """The `sub` of a token the issuer really signed, though refused for another reason (expired, another
        audience): whose sign-in failed. None when the signature itself cannot be trusted."""
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"],
                                issuer=self._issuer, options={"verify_exp": False, "verify_aud": False,
                                                              "verify_iat": False, "verify_nbf": False})
        except jwt.PyJWTError:
            return None
        sub = str(claims.get("sub", ""))
        return sub if USER_RE.fullmatch(sub) else None


def _digest(authorization: str) -> str:
    return hashlib.sha256(authorization.encode()).hexdigest()
