"""The dashboard's login start over HTTP, behind TLS: the redirect a browser gets and the cookie it keeps.
(The whole sign-in runs in a real browser in tests/dashboard.)"""
import urllib.parse

import pytest

pytestmark = pytest.mark.integration


def test_login_behind_tls_redirects_with_pkce_and_sets_a_secure_cookie(make_client):
    client = make_client(oidc_authorization_url="https://idp.example/authorize",
                         public_url="https://envvars.example")
    r = client.get("/dashboard/login?next=/dashboard/executions/new", follow_redirects=False)
    assert r.status_code == 303
    target = urllib.parse.urlparse(r.headers["location"])
    query = urllib.parse.parse_qs(target.query)
    assert f"{target.scheme}://{target.netloc}{target.path}" == "https://idp.example/authorize"
    assert query["redirect_uri"] == ["https://envvars.example/dashboard/callback"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["response_type"] == ["code"] and query["state"][0] and query["nonce"][0]
    cookie = r.headers["set-cookie"]
    for flag in ("Secure", "HttpOnly", "SameSite=lax", "Path=/dashboard", "Max-Age=600"):
        assert flag in cookie
    # Neither the PKCE verifier nor the state can be read from the cookie.
    assert query["state"][0] not in cookie


def test_a_page_without_a_session_goes_to_the_login_and_back(client):
    r = client.get("/dashboard/env-vars?q=db", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fenv-vars%3Fq%3Ddb"
