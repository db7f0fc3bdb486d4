"""The OIDC authorization-code flow with PKCE (RFC 7636, S256), as a confidential or a public client, on
Authlib's OAuth2 client (the authorize URL, the code challenge, the client's authentication at the token
endpoint). The ID token it returns is verified by the service's TokenVerifier, as API bearer tokens are;
the login's state, nonce and verifier travel in the dashboard's encrypted login cookie."""
import secrets
import threading
import time
from dataclasses import dataclass

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge


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
        """The S256 code challenge of the verifier, as the authorize URL carries it."""
        return create_s256_code_challenge(self.verifier)


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

    def _client(self, redirect_uri: str) -> OAuth2Session:
        # client_secret_basic with a secret; else a public client ("none": its id in the body, PKCE only).
        client = OAuth2Session(self._client_id, self._client_secret or None, scope=self._scopes,
                               redirect_uri=redirect_uri, code_challenge_method="S256")
        client.verify = self._verify
        client.register_compliance_hook("access_token_response", _refused)
        return client

    def authorization_redirect(self, attempt: LoginAttempt, redirect_uri: str) -> str:
        base = self._authorization_url or self._discovery()["authorization_endpoint"]
        with self._client(redirect_uri) as client:
            url, _state = client.create_authorization_url(base, state=attempt.state, code_verifier=attempt.verifier,
                                                          nonce=attempt.nonce)
        return url

    def exchange(self, code: str, attempt: LoginAttempt, redirect_uri: str) -> str:
        """The ID token for an authorization code, proven with the attempt's PKCE verifier."""
        token_endpoint = self._discovery()["token_endpoint"]
        with self._client(redirect_uri) as client:
            try:
                token = client.fetch_token(token_endpoint, grant_type="authorization_code", code=code,
                                           code_verifier=attempt.verifier, timeout=10)
            except requests.RequestException:
                raise IdentityProviderError("the identity provider is unreachable") from None
        if not token.get("id_token"):
            raise IdentityProviderError("the identity provider returned no ID token")
        return token["id_token"]


def _refused(r: requests.Response) -> requests.Response:
    """A token response other than 200, told by the provider's error code only: its description could echo
    what was sent."""
    if r.status_code != 200:
        error = r.json().get("error", "") if r.headers.get("content-type", "").startswith("application/json") \
            else ""
        raise IdentityProviderError(f"the identity provider refused the login ({error or r.status_code})")
    return r
