"""`python -m service`, the embedded default: SQLite, settings from the environment, real HTTP."""
import pytest
import requests

from devkit.service_process import start_service
from tests.service.helpers import bearer, settings_for

pytestmark = pytest.mark.integration


def test_python_m_service_serves_the_api(service_vault, issuer, tmp_path):
    server, outputs = service_vault
    settings_for(server, outputs, issuer, "", tmp_path)  # writes the AppRole secret id and login key files
    env = {"ENVVARS_VAULT_ADDR": server.address, "ENVVARS_OIDC_ISSUER": issuer.iss,
           "ENVVARS_OIDC_JWKS_URL": issuer.jwks_url, "ENVVARS_APPROLE_ROLE_ID": outputs["executor_role_id"],
           "ENVVARS_APPROLE_SECRET_ID_FILE": str(tmp_path / "approle-secret-id"),
           "ENVVARS_VAULT_LOGIN_KEY_FILE": str(tmp_path / "vault-login-key")}
    # Started in an empty folder: the SQLite default lands in the working directory.
    proc, base = start_service(env, str(tmp_path), str(tmp_path / "service.log"))
    try:
        h = bearer(issuer, "embedded-alice")
        r = requests.post(f"{base}/api/v2/user/env-vars", json={"name": "HELLO", "value": "embedded-canary"},
                          headers=h, timeout=10)
        assert r.status_code == 201
        assert requests.get(f"{base}/api/v2/user/env-vars", headers=h, timeout=10).json()["total"] == 1
        assert (tmp_path / "envvars.db").exists()  # the SQLite default, in the working directory
    finally:
        proc.terminate()
        proc.wait(10)
    text = open(tmp_path / "service.log").read()
    assert '"event": "request"' in text and "embedded-canary" not in text
