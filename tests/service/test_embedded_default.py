"""`python -m service`, the embedded default: SQLite, settings from the environment, real HTTP."""
import os
import subprocess
import sys
import time

import pytest
import requests

from tests.fixtures.net import free_port
from tests.service.conftest import bearer, settings_for

pytestmark = pytest.mark.integration


def test_python_m_service_serves_the_api(service_vault, issuer, tmp_path):
    server, outputs = service_vault
    settings_for(server, outputs, issuer, "", tmp_path)  # writes the AppRole secret id file
    port = free_port()
    env = {**os.environ, "ENVVARS_PORT": str(port), "ENVVARS_HOST": "127.0.0.1",
           "ENVVARS_VAULT_ADDR": server.address, "ENVVARS_OIDC_ISSUER": issuer.iss,
           "ENVVARS_OIDC_JWKS_URL": issuer.jwks_url, "ENVVARS_APPROLE_ROLE_ID": outputs["executor_role_id"],
           "ENVVARS_APPROLE_SECRET_ID_FILE": str(tmp_path / "approle-secret-id")}
    log = open(tmp_path / "service.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "service"], env=env, cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            pytest.fail(open(tmp_path / "service.log").read())
        h = bearer(issuer, "embedded-alice")
        r = requests.post(f"{base}/api/v2/user/env-vars", json={"name": "HELLO", "value": "embedded-canary"},
                          headers=h, timeout=10)
        assert r.status_code == 201
        assert requests.get(f"{base}/api/v2/user/env-vars", headers=h, timeout=10).json()["total"] == 1
        assert (tmp_path / "envvars.db").exists()  # the SQLite default, in the working directory
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    text = open(tmp_path / "service.log").read()
    assert '"event": "request"' in text and "embedded-canary" not in text
