"""The `existing` stack: the project's Vault configuration applied to a Vault that runs elsewhere."""
import pulumi

from stacks import export
from stacks.config import ExistingVaultConfig, VaultSettings
from stacks.vault import configure_vault
from tools.lib.stack_outputs import Out


def deploy() -> dict[str, pulumi.Output]:
    target = ExistingVaultConfig.load()
    settings = VaultSettings.load()
    # Errors of this Vault's resources name the setting that resolves them (ExistingVaultConfig's hints).
    vault = configure_vault("vault", settings, target.connection, adopt_kv_mount=target.adopt_kv_mount,
                            audit_file_path=target.audit_file_path, hints=target.resource_hints(settings))
    return export({
        Out.KV_PATH: vault.kv_path,
        Out.JWT_ACCESSOR: vault.jwt_accessor,
        Out.EXECUTOR_ROLE_ID: vault.executor_role_id,
        Out.EXECUTOR_SECRET_ID: vault.executor_secret_id,
        Out.SNAPSHOT_ROLE_ID: vault.snapshot_role_id,
        Out.SNAPSHOT_SECRET_ID: vault.snapshot_secret_id,
        # For the service deployed elsewhere: ENVVARS_VAULT_LOGIN_KEY_FILE.
        Out.SERVICE_LOGIN_KEY: vault.service_login_key,
    })
