"""Vault configuration from typed stack settings: shared by the dev and prod compositions, and usable
against an existing Vault (its connection with a config-admin token)."""
from typing import Optional

import pulumi

from infra.database_secrets import DatabaseConnectionArgs, DatabaseRoleArgs, DatabaseSecretsArgs
from infra.providers.vault import VaultConnection
from infra.server_paths import AUDIT_LOG
from infra.vault_configuration import (
    AppRoleArgs,
    JwtAuthArgs,
    ResourceHints,
    VaultConfiguration,
    VaultConfigurationArgs,
    config_admin_policy,
)
from stacks.config import DatabaseSettings, VaultSettings


def admin_policy(settings: VaultSettings) -> str:
    """The config-admin policy for these settings (the bootstrap writes it in raft and prod)."""
    return config_admin_policy(settings.kv_path, db_path=settings.database.path if settings.database else "database")


def database_args(settings: Optional[DatabaseSettings], connection: VaultConnection) -> Optional[DatabaseSecretsArgs]:
    """The database secrets engine's arguments from the stack's settings; None without any."""
    if settings is None:
        return None
    return DatabaseSecretsArgs(
        connection=connection, jwt_accessor="", path=settings.path, passwords=settings.passwords,
        connections=[DatabaseConnectionArgs(name=c.name, connection_url=c.connection_url, username=c.username,
                                            plugin=c.plugin, verify_connection=c.verify_connection)
                     for c in settings.connections],
        roles=[DatabaseRoleArgs(name=r.name, connection=r.connection, creation_statements=r.creation_statements,
                                revocation_statements=r.revocation_statements, default_ttl=r.default_ttl,
                                max_ttl=r.max_ttl, users=r.users) for r in settings.roles])


def configure_vault(
    name: str,
    settings: VaultSettings,
    connection: VaultConnection,
    *,
    adopt_kv_mount: bool = False,
    manage_admin_policy: bool = True,
    autopilot_min_quorum: Optional[int] = None,
    audit_file_path: str = AUDIT_LOG,
    database: Optional[DatabaseSecretsArgs] = None,
    hints: Optional[ResourceHints] = None,
    network_bound_cidrs: Optional[pulumi.Input[list[str]]] = None,
    opts: Optional[pulumi.ResourceOptions] = None,
) -> VaultConfiguration:
    """`jwt_ca_pem`: the CA of the users' key source URL when a private CA signs it (the dev cluster);
    `audiences`: replaces the configured audiences (the dev identity provider's generated client id);
    `hints`: which setting resolves a refused resource (a Vault the stack did not make).
    Users' identity provider settings are the service's (it verifies their tokens); Vault's JWT mount
    trusts only the service's login key (infra/vault_configuration.py).
    `network_bound_cidrs`: where the executor and the snapshot job run (the container engine's network):
    their secret ids then never run out (no TTL, no use limit) and work only from there, tokens too; an empty
    list: never run out, bound nowhere.
    `database`: replaces the database engine's arguments made from the settings (the dev stack adds its own)."""
    bound, cidrs = network_bound_cidrs is not None, network_bound_cidrs or []
    return VaultConfiguration(name, VaultConfigurationArgs(
        connection=connection,
        kv_path=settings.kv_path,
        kv_max_versions=settings.kv_max_versions,
        adopt_kv_mount=adopt_kv_mount,
        manage_admin_policy=manage_admin_policy,
        autopilot_min_quorum=autopilot_min_quorum,
        audit_via_api=settings.server_flavor == "vault",
        audit_file_path=audit_file_path,
        hints=hints or ResourceHints(),
        jwt=JwtAuthArgs(
            type=settings.auth_type,
            token_ttl=settings.user_token_ttl,
            token_max_ttl=settings.user_token_max_ttl,
        ),
        approle=AppRoleArgs(
            token_ttl=settings.executor_token_ttl,
            token_max_ttl=settings.executor_token_max_ttl,
            secret_id_ttl=0 if bound else settings.executor_secret_id_ttl,
            secret_id_num_uses=0 if bound else settings.executor_secret_id_num_uses,
            bound_cidrs=cidrs if bound else settings.executor_bound_cidrs,
        ),
        snapshot_approle=AppRoleArgs(  # one login per run, a token revoked at its end
            token_ttl=600, token_max_ttl=1800,
            secret_id_ttl=0 if bound else AppRoleArgs.secret_id_ttl,
            secret_id_num_uses=0 if bound else AppRoleArgs.secret_id_num_uses,
            bound_cidrs=cidrs,
        ),
        database=database or database_args(settings.database, connection),
    ), opts)
