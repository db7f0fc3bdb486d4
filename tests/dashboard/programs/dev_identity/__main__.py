"""The dev stack's identity provider (Vault's OIDC provider, userpass demo users) and the project's Vault
configuration trusting it, composed as stacks/dev.py does, on a dev server the tests start: a real issuer
for the dashboard's browser tests."""
import pulumi

from infra.dev_identity import DevIdentity, DevIdentityArgs, issuer_url, jwks_url
from stacks.config import ExistingVaultConfig, VaultSettings
from stacks.vault import configure_vault

target = ExistingVaultConfig.load()
address = target.connection.address
identity = DevIdentity("identity", DevIdentityArgs(
    connection=target.connection, issuer_base_url=address,
    redirect_uris=[pulumi.Config("target").require("redirectUri")]))
settings = VaultSettings.load(default_key_source={"jwks_url": jwks_url(address), "issuer": issuer_url(address)})
vault = configure_vault("vault", settings, target.connection,
                        adopt_kv_mount=target.adopt_kv_mount, audit_file_path=target.audit_file_path,
                        opts=pulumi.ResourceOptions(depends_on=[identity]))
# Its own output names (a test program, not a composition: stacks.export admits only the stacks' names).
for name, value in {"issuer": identity.issuer, "client_id": identity.client_id, "client_secret": identity.client_secret,
        "demo_passwords": identity.demo_passwords, "executor_role_id": vault.executor_role_id,
        "executor_secret_id": vault.executor_secret_id, "service_login_key": vault.service_login_key}.items():
    pulumi.export(name, value)
