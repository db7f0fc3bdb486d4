"""The service's own login tokens for Vault's user role.

Vault's JWT mount trusts only the service's key (infra/vault_configuration.py), never the identity
provider: a user's token, or one a job obtained or made up, cannot log in at Vault by itself. The service
signs a token only after it verified the user's own token and admitted the user (service/auth/identities.py), for
the registered spelling of the user's id, with an audience only Vault's user role accepts, valid for a
minute and used at once. Vault therefore never sees two spellings of one id (`carol`, `CAROL`) that it
would fold into one identity.
"""
import secrets
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from service.auth import USER_RE

# The names Vault's configuration binds (infra/vault_configuration.py: SERVICE_LOGIN_*).
ISSUER = "vault-envvars-service"
AUDIENCE = "vault-envvars:user-role"
ALGORITHM = "ES256"
TTL_SECONDS = 60


class LoginKeyError(Exception):
    """The configured login key is unusable (not a PEM EC P-256 private key)."""


class VaultLoginSigner:
    def __init__(self, key_pem: str, issuer: str = ISSUER, audience: str = AUDIENCE, ttl: int = TTL_SECONDS):
        try:
            key = load_pem_private_key(key_pem.encode(), password=None)
        except (ValueError, TypeError) as e:
            raise LoginKeyError("the Vault login key is not a PEM private key") from e
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise LoginKeyError("the Vault login key must be an EC P-256 key (ES256)")
        self._key, self._issuer, self._audience, self._ttl = key, issuer, audience, ttl

    def token(self, user: str) -> str:
        """A login token for `user`, the registered spelling of an admitted user's id."""
        if not USER_RE.fullmatch(user):
            raise ValueError("not a usable user id")
        now = int(time.time())
        return jwt.encode({"iss": self._issuer, "aud": self._audience, "sub": user, "iat": now, "nbf": now,
                           "exp": now + self._ttl, "jti": secrets.token_hex(16)}, self._key, algorithm=ALGORITHM)
