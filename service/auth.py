"""Users are authenticated by OIDC/JWT bearer tokens verified against the issuer's keys (JWKS)."""
import re
import ssl
from dataclasses import dataclass
from typing import Optional

import jwt
from jwt import PyJWKClient

USER_RE = re.compile(r"[A-Za-z0-9._@-]{1,128}")


class Unauthenticated(Exception):
    pass


@dataclass(frozen=True)
class Caller:
    user: str  # the token's `sub`: the user's identity here and in Vault
    token: str


class TokenVerifier:
    def __init__(self, jwks_url: str, issuer: str, audience: str, ca_file: str = ""):
        ctx = ssl.create_default_context(cafile=ca_file or None)
        self._jwks = PyJWKClient(jwks_url, cache_keys=True, lifespan=300, ssl_context=ctx)
        self._issuer, self._audience = issuer, audience

    def verify(self, authorization: str) -> Caller:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("a Bearer token is required")
        return Caller(user=self.claims(token)["sub"], token=token)

    def claims(self, token: str) -> dict:
        """The claims of a token signed by the issuer, for this audience, unexpired, with a usable `sub`."""
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"],
                                audience=self._audience, issuer=self._issuer,
                                options={"require": ["exp", "iat", "sub", "iss", "aud"]})
        except jwt.PyJWKClientError as e:
            raise Unauthenticated("the token's signing key is unknown") from e
        except jwt.PyJWTError as e:
            raise Unauthenticated(f"invalid token: {type(e).__name__}") from e
        claims["sub"] = str(claims["sub"])
        if not USER_RE.fullmatch(claims["sub"]):
            raise Unauthenticated("the token's subject is not a usable user id")
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
