"""How the env-vars service reaches Vault and the identity provider, and how its dashboard logs users in:
one dataclass for its Docker and Kubernetes components, one place that turns it into the service's
ENVVARS_* settings and its secret files (0400 files, never environment variables)."""
from dataclasses import dataclass
from typing import Optional

import pulumi

SECRETS_DIR = "/run/envvars"


@dataclass
class ServiceConnection:
    vault_address: pulumi.Input[str]  # as the service reaches Vault
    vault_ca_pem: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    oidc_jwks_url: pulumi.Input[str]
    oidc_audience: pulumi.Input[str]  # also the dashboard's OIDC client id
    role_id: pulumi.Input[str]  # the executor's AppRole
    secret_id: pulumi.Input[str]
    oidc_ca_pem: pulumi.Input[str] = ""  # the issuer's CA when it is not publicly trusted
    # The dashboard's login: a confidential client's secret ("" for a public client, PKCE only), the
    # browser-facing authorization URL when discovery's is not reachable by browsers, the scopes, and the
    # dashboard's URL as browsers see it (its redirect URI is that + /dashboard/callback).
    oidc_client_secret: pulumi.Input[str] = ""
    oidc_authorization_url: pulumi.Input[str] = ""
    oidc_scopes: str = "openid"
    public_url: pulumi.Input[str] = ""
    # The key the service signs users' Vault login tokens with (VaultConfiguration.service_login_key):
    # Vault's user role trusts no other.
    vault_login_key: pulumi.Input[str] = ""
    # The platform team's webhook (service/webhooks.py, the stack's): its URL, and its signing secret
    # (a file, like the other secrets). Both or neither.
    platform_webhook_url: pulumi.Input[str] = ""
    platform_webhook_secret: pulumi.Input[str] = ""


def service_env(conn: ServiceConnection, extra: Optional[dict] = None) -> pulumi.Output[dict]:
    """The service's settings, none of them secret (secrets are named by *_FILE settings)."""
    def render(v: list) -> dict:
        (vault, issuer, jwks, audience, role_id, vault_ca, oidc_ca, client_secret, auth_url, public_url, login_key,
         hook_url, hook_secret) = v
        env = {
            "ENVVARS_VAULT_ADDR": vault, "ENVVARS_OIDC_ISSUER": issuer, "ENVVARS_OIDC_JWKS_URL": jwks,
            "ENVVARS_OIDC_AUDIENCE": audience,
            "ENVVARS_APPROLE_ROLE_ID": role_id,  # an identifier, not a secret: useless without the secret id
            "ENVVARS_APPROLE_SECRET_ID_FILE": f"{SECRETS_DIR}/approle-secret-id",
            "ENVVARS_SESSION_KEY_FILE": f"{SECRETS_DIR}/session-key",
            "ENVVARS_OIDC_SCOPES": conn.oidc_scopes,
        }
        optional = {"ENVVARS_VAULT_CACERT": vault_ca and f"{SECRETS_DIR}/vault-ca.pem",
                    "ENVVARS_OIDC_CACERT": oidc_ca and f"{SECRETS_DIR}/oidc-ca.pem",
                    "ENVVARS_OIDC_CLIENT_SECRET_FILE": client_secret and f"{SECRETS_DIR}/oidc-client-secret",
                    "ENVVARS_OIDC_AUTHORIZATION_URL": auth_url, "ENVVARS_PUBLIC_URL": public_url,
                    "ENVVARS_VAULT_LOGIN_KEY_FILE": login_key and f"{SECRETS_DIR}/vault-login-key",
                    "ENVVARS_STACK_WEBHOOK_URL": hook_url,
                    "ENVVARS_STACK_WEBHOOK_SECRET_FILE": hook_secret and f"{SECRETS_DIR}/stack-webhook-secret"}
        return {**env, **{k: v for k, v in optional.items() if v}, **(extra or {})}

    # The client secret, the login key and the webhook's secret are only tested for presence here: their
    # values go to secret_files alone.
    def present(value: pulumi.Input[str]) -> pulumi.Output[str]:
        return pulumi.Output.from_input(value).apply(lambda s: "yes" if s else "")

    return pulumi.Output.all(conn.vault_address, conn.oidc_issuer, conn.oidc_jwks_url, conn.oidc_audience,
                             conn.role_id, conn.vault_ca_pem, conn.oidc_ca_pem, present(conn.oidc_client_secret),
                             conn.oidc_authorization_url, conn.public_url, present(conn.vault_login_key),
                             conn.platform_webhook_url, present(conn.platform_webhook_secret)).apply(render)


def secret_files(conn: ServiceConnection, session_key: pulumi.Input[str],
                 extra: Optional[dict] = None) -> pulumi.Output[dict]:
    """{file name in SECRETS_DIR: content} of the non-empty ones: a secret output, encrypted in state."""
    files = {"approle-secret-id": conn.secret_id, "session-key": session_key, "vault-ca.pem": conn.vault_ca_pem,
             "oidc-ca.pem": conn.oidc_ca_pem, "oidc-client-secret": conn.oidc_client_secret,
             "vault-login-key": conn.vault_login_key, "stack-webhook-secret": conn.platform_webhook_secret,
             **(extra or {})}
    names = list(files)
    return pulumi.Output.secret(pulumi.Output.all(*files.values()).apply(
        lambda values: {n: c for n, c in zip(names, values, strict=True) if c}))
