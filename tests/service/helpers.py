"""Helpers shared by the service's tests (fixtures stay in conftest.py): a Vault configured by the project's
own configuration, the service's settings and clients on it, users' tokens, and the API calls and job
commands several test modules make."""
import json
import os
import secrets
import time

import hvac
import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from fastapi.testclient import TestClient
from pulumi import automation as auto

from devkit.jwt_issuer import TestIssuer
from devkit.stacks import ThrowawayStack
from devkit.vault_servers import start_dev_server
from infra.providers.tls import make_signing_key
from service.app import create_app
from service.settings import Settings

API = "/api/v2/user/env-vars"


def configure(pulumi_backend, server, issuer, more: dict | None = None) -> tuple[ThrowawayStack, dict]:
    """The project's Vault configuration applied to `server`, plus `more` settings."""
    s = ThrowawayStack("integration/programs/vault_config", dict(pulumi_backend))
    s.stack.set_all_config({
        "vault-envvars:vaultAddress": auto.ConfigValue(server.address),
        "vault-envvars:vaultToken": auto.ConfigValue(server.token, secret=True),
        "vault-envvars:adoptKvMount": auto.ConfigValue("true"),
        "vault-envvars:auditFilePath": auto.ConfigValue(server.audit_log),
        "vault-envvars:jwtIssuer": auto.ConfigValue(issuer.iss),
        "vault-envvars:jwtAudiences": auto.ConfigValue(issuer.audience),
        "vault-envvars:jwksUrl": auto.ConfigValue(issuer.jwks_url),
        **(more or {}),
    })
    return s, {k: v.value for k, v in s.up().outputs.items()}


def configured_vault(toolchain, pulumi_backend, issuer, workdir: str, *, breakable: bool = False):
    """Yields (server, stack outputs): a dev server with the project's configuration, stopped afterwards.
    A `breakable` one (a test may seal, stop or hang it) has its stack removed without a destroy, which
    would need the server."""
    server = start_dev_server(toolchain["bao"], workdir)
    s, outputs = configure(pulumi_backend, server, issuer)
    yield server, outputs
    if breakable:
        server.stop()
        s.stack.workspace.remove_stack(s.name, force=True)
    else:
        s.destroy()
        server.stop()


def _secret_file(path, content: str) -> str:
    if path.exists():
        path.chmod(0o600)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400), "w") as f:
        f.write(content)
    path.chmod(0o400)
    return str(path)


def settings_for(server, outputs, issuer, database_url: str, tmp_path, **extra) -> Settings:
    """Writes the AppRole secret id and the Vault login key (0400 files in tmp_path); stack outputs
    without a login key (a server the project did not configure) get a key of their own."""
    secret_file = _secret_file(tmp_path / "approle-secret-id", outputs["executor_secret_id"])
    login_key = _secret_file(tmp_path / "vault-login-key",
                             outputs.get("service_login_key") or make_signing_key()["key_pem"])
    env = {
        "ENVVARS_VAULT_ADDR": server.address,
        "ENVVARS_OIDC_ISSUER": issuer.iss,
        "ENVVARS_OIDC_AUDIENCE": issuer.audience,
        "ENVVARS_OIDC_JWKS_URL": issuer.jwks_url,
        "ENVVARS_DATABASE_URL": database_url,
        "ENVVARS_APPROLE_ROLE_ID": outputs["executor_role_id"],
        "ENVVARS_APPROLE_SECRET_ID_FILE": secret_file,
        "ENVVARS_VAULT_LOGIN_KEY_FILE": login_key,
        **{f"ENVVARS_{k.upper()}": str(v) for k, v in extra.items()},
    }
    return Settings.from_env(env)


def process_env(server, outputs, issuer, tmp_path, **extra) -> dict:
    """The ENVVARS_* settings of a `python -m service` process on this Vault (SQLite in tmp_path unless
    `extra` says otherwise), its secrets in 0400 files."""
    settings_for(server, outputs, issuer, "", tmp_path)  # writes the secret id and login key files (0400)
    key_file = tmp_path / "session-key"
    key_file.write_text(secrets.token_urlsafe(32))
    key_file.chmod(0o400)
    return {"ENVVARS_VAULT_ADDR": server.address, "ENVVARS_OIDC_ISSUER": issuer.iss,
            "ENVVARS_OIDC_JWKS_URL": issuer.jwks_url, "ENVVARS_APPROLE_ROLE_ID": outputs["executor_role_id"],
            "ENVVARS_APPROLE_SECRET_ID_FILE": str(tmp_path / "approle-secret-id"),
            "ENVVARS_SESSION_KEY_FILE": str(key_file), "ENVVARS_VAULT_LOGIN_KEY_FILE": str(tmp_path / "vault-login-key"),
            "ENVVARS_DATABASE_URL": f"sqlite:///{tmp_path}/envvars.db", **extra}


def app_clients(server_outputs, issuer, tmp_path):
    """Yields make(database_url="", **settings) -> a TestClient on a freshly built app on that Vault
    (SQLite in tmp_path by default); closes every one afterwards."""
    made = []

    def make(database_url: str = "", **extra) -> TestClient:
        server, outputs = server_outputs
        url = database_url or f"sqlite:///{tmp_path}/envvars-{len(made)}.db"
        client = TestClient(create_app(settings=settings_for(server, outputs, issuer, url, tmp_path, **extra)))
        client.__enter__()
        made.append(client)
        return client

    yield make
    for c in made:
        c.__exit__(None, None, None)


def vault_login_token(outputs, user: str, **claims) -> str:
    """A login token for Vault's user role as the service signs it (for tests that reach Vault directly);
    `claims` override the service's (an audience, an expiry...)."""
    now = int(time.time())
    body = {"iss": "vault-envvars-service", "aud": "vault-envvars:user-role", "sub": user, "iat": now, "nbf": now,
            "exp": now + 60, **claims}
    return jwt.encode(body, load_pem_private_key(outputs["service_login_key"].encode(), None), algorithm="ES256")


def bearer(issuer: TestIssuer, user: str) -> dict:
    return {"Authorization": f"Bearer {issuer.token(user)}"}


def wait_finished(client, headers, execution_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/v2/execution/{execution_id}", headers=headers).json()
        if body["status"] not in ("queued", "running"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"execution {execution_id} did not finish: {json.dumps(body)}")


def create_env_var(client, headers, name, value, description="") -> dict:
    r = client.post(API, json={"name": name, "description": description, "value": value}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def root_client(service_vault) -> hvac.Client:
    server, _ = service_vault
    return hvac.Client(url=server.address, token=server.token)


def stored_value(service_vault, user, env_var_id) -> str:
    r = root_client(service_vault).secrets.kv.v2.read_secret_version(
        path=f"users/{user}/{env_var_id}", mount_point="secret", raise_on_deleted_version=True)
    return r["data"]["data"]["value"]


PRINT_ENV = ("import hashlib, os, sys\n"
             "for name in sys.argv[1:]:\n"
             "    raw = os.environb[name.encode()]\n"
             "    print(name, hashlib.sha256(raw).hexdigest())\n"
             "    sys.stdout.buffer.write(raw + b'\\n')\n")


# The job prints each common encoding of each value given in argv order, one per line, and a digest.
PRINT_ENCODED = r"""
import base64, hashlib, json, os, sys, urllib.parse
for name in sys.argv[1:]:
    v = os.environb[name.encode()]
    s = v.decode()
    for form in (base64.b64encode(v), base64.b64encode(v).rstrip(b"="), base64.urlsafe_b64encode(v),
                 base64.urlsafe_b64encode(v).rstrip(b"="), v.hex().encode(), v.hex().upper().encode(),
                 urllib.parse.quote(s, safe="").encode(), urllib.parse.quote_plus(s).encode(),
                 json.dumps(s)[1:-1].encode(), json.dumps(s, ensure_ascii=False)[1:-1].encode()):
        print(name, form.decode())
    print(name, "sha256", hashlib.sha256(v).hexdigest())
"""
