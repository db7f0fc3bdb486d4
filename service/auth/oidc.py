"""The OIDC authorization-code flow with PKCE (RFC 7636, S256), as a confidential or a public client.
The ID token it returns is verified by the service's TokenVerifier, as API bearer tokens are."""
import base64
import hashlib
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass

import requests


class IdentityProviderError(Exception):
    """The issuer is unreachable or refused the exchange; the message is safe to show."""


@dataclass(frozen=True)
class LoginAttempt:
    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls) -> "LoginAttempt":
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(64))

    @property
    def challenge(self) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(self.verifier.encode()).digest()).rstrip(b"=").decode()


class OidcClient:
    def __init__(self, issuer: str, client_id: str, client_secret: str = "", ca_file: str = "",
                 authorization_url: str = "", scopes: str = "openid"):
        self._issuer, self._client_id, self._client_secret = issuer.rstrip("/"), client_id, client_secret
        self._verify = ca_file or True
        self._authorization_url, self._scopes = authorization_url, scopes
        self._metadata: dict = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def _discovery(self) -> dict:
        with self._lock:
            if not self._metadata or time.monotonic() - self._fetched > 3600:
                url = f"{self._issuer}/.well-known/openid-configuration"
                try:
                    r = requests.get(url, timeout=5, verify=self._verify)
                    r.raise_for_status()
                    self._metadata, self._fetched = r.json(), time.monotonic()
                except (requests.RequestException, ValueError):
                    raise IdentityProviderError("the identity provider's discovery document is unavailable") \
                        from None
            return self._metadata

    def authorization_redirect(self, attempt: LoginAttempt, redirect_uri: str) -> str:
        base = self._authorization_url or self._discovery()["authorization_endpoint"]
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": self._client_id, "redirect_uri": redirect_uri,
            "scope": self._scopes, "state": attempt.state, "nonce": attempt.nonce,
            "code_challenge": attempt.challenge, "code_challenge_method": "S256",
        })
        return f"{base}{'&' if '?' in base else '?'}{query}"

    def exchange(self, code: str, attempt: LoginAttempt, redirect_uri: str) -> str:
        """The ID token for an authorization code, proven with the attempt's PKCE verifier."""
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": attempt.verifier}
        auth = None
        if self._client_secret:
            auth = (self._client_id, self._client_secret)  # client_secret_basic
        else:
            data["client_id"] = self._client_id
        try:
            r = requests.post(self._discovery()["token_endpoint"], data=data, auth=auth, timeout=10,
                              verify=self._verify)
        except requests.RequestException:
            raise IdentityProviderError("the identity provider is unreachable") from None
        if r.status_code != 200:
            # The provider's error code only: its description could echo what was sent.
            error = r.json().get("error", "") if r.headers.get("content-type", "").startswith("application/json") \
                else ""
            raise IdentityProviderError(f"the identity provider refused the login ({error or r.status_code})")
        token = r.json().get("id_token")
        if not token:
            raise IdentityProviderError("the identity provider returned no ID token")
        return token
