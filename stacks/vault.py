"""Vault configuration from typed stack settings: shared by the dev and prod compositions, and usable
against an existing Vault (its connection with a config-admin token)."""
from typing import Optional

import pulumi

from infra.providers.vault import VaultConnection
from infra.server_paths import AUDIT_LOG
from infra.vault_configuration import AppRoleArgs, JwtAuthArgs, VaultConfiguration, VaultConfigurationArgs
from stacks.config import VaultSettings


def configure_vault(
    name: str,
    settings: VaultSettings,
    connection: VaultConnection,
    *,
    adopt_kv_mount: bool = False,
    manage_admin_policy: bool = True,
    autopilot_min_quorum: Optional[int] = None,
    audit_file_path: str = AUDIT_LOG,
    opts: Optional[pulumi.ResourceOptions] = None,
) -> VaultConfiguration:
    """Users' identity provider settings are the service's (it verifies their tokens); Vault's JWT mount
    trusts only the service's login key (infra/vault_configuration.py)."""
    return VaultConfiguration(name, VaultConfigurationArgs(
        connection=connection,
        kv_path=settings.kv_path,
        kv_max_versions=settings.kv_max_versions,
        adopt_kv_mount=adopt_kv_mount,
        manage_admin_policy=manage_admin_policy,
        autopilot_min_quorum=autopilot_min_quorum,
        audit_via_api=settings.server_flavor == "vault",
        audit_file_path=audit_file_path,
        jwt=JwtAuthArgs(
            type=settings.auth_type,
            token_ttl=settings.user_token_ttl,
            token_max_ttl=settings.user_token_max_ttl,
        ),
        approle=AppRoleArgs(
            token_ttl=settings.executor_token_ttl,
            token_max_ttl=settings.executor_token_max_ttl,
            secret_id_ttl=settings.executor_secret_id_ttl,
            secret_id_num_uses=settings.executor_secret_id_num_uses,
            bound_cidrs=settings.executor_bound_cidrs,
        ),
    ), opts)
