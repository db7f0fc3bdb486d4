"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the service run as
`python -m service` (its own process, its log kept for canary searches), logging users in through a real
OIDC issuer: an OpenBao dev server with the dev stack's identity provider and the Vault UI's login page."""
import os

import pytest
from pulumi import automation as auto

from devkit.net import free_port
from devkit.service_process import start_service
from devkit.stacks import ThrowawayStack
from devkit.vault_servers import start_dev_server
from tests.dashboard.helpers import Dashboard


@pytest.fixture(scope="session")
def dashboard(toolchain, pulumi_backend, tmp_path_factory):
    work = tmp_path_factory.mktemp("dashboard")
    server = start_dev_server(toolchain["bao"], str(work / "bao"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stack = ThrowawayStack("dashboard/programs/dev_identity", dict(pulumi_backend))
    proc = None
    try:
        stack.stack.set_all_config({
            "vault-envvars:vaultAddress": auto.ConfigValue(server.address),
            "vault-envvars:vaultToken": auto.ConfigValue(server.token, secret=True),
            "vault-envvars:adoptKvMount": auto.ConfigValue("true"),
            "vault-envvars:auditFilePath": auto.ConfigValue(server.audit_log),
            "target:redirectUri": auto.ConfigValue(f"{url}/dashboard/callback"),
        })
        out = {k: v.value for k, v in stack.up().outputs.items()}
        files = {}
        for name, content in (("secret-id", out["executor_secret_id"]), ("client-secret", out["client_secret"]),
                              ("vault-login-key", out["service_login_key"])):
            files[name] = str(work / name)
            with open(os.open(files[name], os.O_WRONLY | os.O_CREAT, 0o400), "w") as f:
                f.write(content)
        db_path = str(work / "envvars.db")
        env = {"ENVVARS_VAULT_ADDR": server.address, "ENVVARS_OIDC_ISSUER": out["issuer"],
               "ENVVARS_OIDC_JWKS_URL": f"{out['issuer']}/.well-known/keys",
               "ENVVARS_OIDC_AUDIENCE": out["client_id"], "ENVVARS_OIDC_CLIENT_SECRET_FILE": files["client-secret"],
               "ENVVARS_OIDC_SCOPES": "openid profile", "ENVVARS_DATABASE_URL": f"sqlite:///{db_path}",
               "ENVVARS_APPROLE_ROLE_ID": out["executor_role_id"],
               "ENVVARS_APPROLE_SECRET_ID_FILE": files["secret-id"],
               "ENVVARS_VAULT_LOGIN_KEY_FILE": files["vault-login-key"],
               # Every page a test browses counts against the user's limit (default 120/minute), and the
               # browser tests share two users: the limit itself is tested in tests/service/.
               "ENVVARS_RATE_LIMIT": "1000/minute"}
        log_path = str(work / "service.log")
        proc, _ = start_service(env, str(work), log_path, port)
        yield Dashboard(url, server.address, server.token, out["issuer"], out["demo_passwords"], log_path, db_path)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        try:
            stack.destroy()
        finally:
            server.stop()
