"""The dashboard's OIDC client (service/auth/oidc.py) as a public client, PKCE only, against the real issuer
(Vault's OIDC provider): the parameters it sends are accepted, the code is exchanged with the verifier,
and a wrong verifier is refused."""
import urllib.parse

import hvac
import pytest
import requests

from service.auth import TokenVerifier
from service.auth.oidc import IdentityProviderError, LoginAttempt, OidcClient

pytestmark = pytest.mark.browser


def _code(dashboard, oidc: OidcClient, attempt: LoginAttempt, redirect: str) -> str:
    """What the browser brings back: the authorize request the client built, made through the provider's
    API as the signed-in user (the Vault UI makes the same call)."""
    query = urllib.parse.urlparse(oidc.authorization_redirect(attempt, redirect)).query
    login = requests.post(f"{dashboard.vault_url}/v1/auth/userpass/login/alice",
                          json={"password": dashboard.passwords["alice"]}, timeout=10).json()
    r = requests.get(f"{dashboard.issuer}/authorize", params=dict(urllib.parse.parse_qsl(query)), timeout=10,
                     headers={"X-Vault-Token": login["auth"]["client_token"]})
    r.raise_for_status()
    assert r.json()["state"] == attempt.state
    return r.json()["code"]


def test_a_public_client_signs_in_with_pkce_and_a_wrong_verifier_is_refused(dashboard):
    redirect = f"{dashboard.url}/dashboard/callback"
    vault = hvac.Client(url=dashboard.vault_url, token=dashboard.vault_token)
    vault.write("identity/oidc/client/dashboard-public", key="envvars", redirect_uris=[redirect],
                assignments=["allow_all"], client_type="public")
    try:
        client_id = vault.read("identity/oidc/client/dashboard-public")["data"]["client_id"]
        oidc = OidcClient(dashboard.issuer, client_id)  # no secret

        stolen = LoginAttempt.new()
        code = _code(dashboard, oidc, stolen, redirect)
        with pytest.raises(IdentityProviderError, match="refused the login"):
            oidc.exchange(code, LoginAttempt(stolen.state, stolen.nonce, LoginAttempt.new().verifier), redirect)

        attempt = LoginAttempt.new()
        token = oidc.exchange(_code(dashboard, oidc, attempt, redirect), attempt, redirect)
        claims = TokenVerifier(f"{dashboard.issuer}/.well-known/keys", dashboard.issuer, client_id).claims(token)
        assert claims["nonce"] == attempt.nonce and claims["aud"] == client_id
    finally:
        vault.delete("identity/oidc/client/dashboard-public")  # the dev provider's key stays deletable
