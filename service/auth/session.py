"""The dashboard's cookies: encrypted and authenticated (Fernet), so their content (the user's ID token,
the CSRF token, a login's PKCE verifier) is neither readable nor forgeable by the browser or a proxy."""
import base64
import hashlib
import json
from typing import Optional

from cryptography.fernet import Fernet, InvalidToken

SESSION_COOKIE = "envvars_session"
LOGIN_COOKIE = "envvars_login"


class CookieCodec:
    def __init__(self, key: str):
        # Any length of configured key; none: a key of this process only.
        raw = hashlib.sha256(key.encode()).digest() if key else base64.urlsafe_b64decode(Fernet.generate_key())
        self._fernet = Fernet(base64.urlsafe_b64encode(raw))

    def dump(self, data: dict) -> str:
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":")).encode()).decode()

    def load(self, cookie: Optional[str], max_age: int) -> Optional[dict]:
        """The data, or None when absent, tampered with, made with another key or older than `max_age` s."""
        if not cookie:
            return None
        try:
            return json.loads(self._fernet.decrypt(cookie.encode(), ttl=max_age))
        except (InvalidToken, ValueError):
            return None
