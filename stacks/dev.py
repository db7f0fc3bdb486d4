"""The `dev` stack: Vault on the local container engine, its configuration, a dev identity provider."""
import pulumi

from infra.dev_identity import DevIdentity, DevIdentityArgs, issuer_url, jwks_url
from infra.providers.random import RandomSecret
from infra.vault_dev_server import VaultDevServer, VaultDevServerArgs
from stacks.config import DevConfig, VaultSettings
from stacks.vault import configure_vault

# Vault reaches its own OIDC provider on loopback inside its container; the service and other
# containers reach Vault by its network alias.
VAULT_SELF = "http://127.0.0.1:8200"
VAULT_ALIAS = "http://vault:8200"


def deploy() -> dict[str, pulumi.Output]:
    cfg = DevConfig.load()
    settings = VaultSettings.load(default_key_source={"jwks_url": jwks_url(VAULT_SELF),
                                                      "issuer": issuer_url(VAULT_ALIAS)})
    labels = {"vault-envvars.stack": pulumi.get_stack()}
    root_token = RandomSecret("vault-dev-root-token", length=24, prefix="dev-")
    server = VaultDevServer("vault", VaultDevServerArgs(
        image=cfg.vault_image, root_token=root_token.result, host_port=cfg.vault_host_port, labels=labels,
        flavor=settings.server_flavor,
    ))
    identity = DevIdentity("identity", DevIdentityArgs(address=server.address, token=server.root_token,
                                                       issuer_base_url=VAULT_ALIAS))
    vault = configure_vault(
        "vault", settings, address=server.address, token=server.root_token, adopt_kv_mount=True,
        audit_file_path="/bao/logs/audit.log", opts=pulumi.ResourceOptions(depends_on=[identity]),
    )
    outputs = {
        "vault_address": server.address,
        "vault_root_token": server.root_token,
        "jwt_issuer": identity.issuer,
        "demo_user_passwords": identity.demo_passwords,
        "executor_role_id": vault.executor_role_id,
    }
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
