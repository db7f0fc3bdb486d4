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
    jwt_ca_pem: pulumi.Input[str] = "",
    adopt_kv_mount: bool = False,
    manage_admin_policy: bool = True,
    autopilot_min_quorum: Optional[int] = None,
    audiences: Optional[pulumi.Input[list[str]]] = None,
    audit_file_path: str = AUDIT_LOG,
    network_bound_cidrs: Optional[pulumi.Input[list[str]]] = None,
    opts: Optional[pulumi.ResourceOptions] = None,
) -> VaultConfiguration:
    """`jwt_ca_pem`: the CA of the users' key source URL when a private CA signs it (the dev cluster);
    `audiences`: replaces the configured audiences (the dev identity provider's generated client id);
    `network_bound_cidrs`: where the executor and the snapshot job run (the container engine's network):
    their secret ids then never run out (no TTL, no use limit) and work only from there, tokens too."""
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
        jwt=JwtAuthArgs(
            type=settings.auth_type,
            bound_audiences=audiences if audiences is not None else settings.audiences,
            bound_issuer=settings.issuer,
            oidc_discovery_url=settings.oidc_discovery_url,
            jwks_url=settings.jwks_url,
            validation_pubkeys=settings.validation_pubkeys,
            ca_pem=jwt_ca_pem,
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
    ), opts)
