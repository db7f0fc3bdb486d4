"""The `existing` stack: the project's Vault configuration applied to a Vault that runs elsewhere."""
import pulumi

from stacks import export
from stacks.config import ExistingVaultConfig, VaultSettings
from stacks.vault import configure_vault


def deploy() -> dict[str, pulumi.Output]:
    target = ExistingVaultConfig.load()
    settings = VaultSettings.load()
    # Errors of this Vault's resources name the setting that resolves them (ExistingVaultConfig's hints).
    vault = configure_vault("vault", settings, target.connection, adopt_kv_mount=target.adopt_kv_mount,
                            audit_file_path=target.audit_file_path, hints=target.resource_hints(settings))
    return export({
        "kv_path": vault.kv_path,
        "jwt_accessor": vault.jwt_accessor,
        "executor_role_id": vault.executor_role_id,
        "executor_secret_id": vault.executor_secret_id,
        "snapshot_role_id": vault.snapshot_role_id,
        "snapshot_secret_id": vault.snapshot_secret_id,
        # For the service deployed elsewhere: ENVVARS_VAULT_LOGIN_KEY_FILE.
        "service_login_key": vault.service_login_key,
    })
