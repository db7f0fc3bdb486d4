"""The service's wiring, shared by the dev and prod compositions: how it reaches Vault, whose tokens it
accepts, how its dashboard signs users in (through the dev identity provider where the stack has one for
its users), and the platform team's webhook."""
from typing import Optional

import pulumi

from infra.dev_identity import DevIdentity
from infra.service_connection import ServiceConnection
from infra.vault_configuration import VaultConfiguration
from stacks.config import PlatformWebhookSettings, VaultSettings
from stacks.platform_webhook import platform_webhook_secret
from tools.lib.stack_outputs import Out


def service_connection(settings: VaultSettings, vault: VaultConfiguration, *, vault_address: pulumi.Input[str],
                       vault_ca_pem: pulumi.Input[str], jwks_url: pulumi.Input[str],
                       identity: Optional[DevIdentity], webhook: PlatformWebhookSettings,
                       public_url: pulumi.Input[str] = "", oidc_client_secret: pulumi.Input[str] = "",
                       ) -> tuple[ServiceConnection, dict[str, pulumi.Output]]:
    """The service's connection, and the outputs it adds (the webhook's secret). `identity`: the dev
    identity provider the users sign in with (its client is the dashboard's; its CA is the cluster's), or
    None: the stack's settings (audience, `oidc_client_secret`)."""
    connection = ServiceConnection(
        vault_address=vault_address, vault_ca_pem=vault_ca_pem, oidc_issuer=settings.issuer, oidc_jwks_url=jwks_url,
        oidc_audience=identity.client_id if identity else settings.audiences[0],
        role_id=vault.executor_role_id, secret_id=vault.executor_secret_id,
        oidc_client_secret=oidc_client_secret, public_url=public_url, vault_login_key=vault.service_login_key)
    outputs: dict[str, pulumi.Output] = {}
    hook_secret = platform_webhook_secret(webhook)
    if hook_secret is not None:  # the platform team verifies the deliveries' signatures with it
        connection.platform_webhook_url, connection.platform_webhook_secret = webhook.url, hook_secret
        outputs[Out.PLATFORM_WEBHOOK_SECRET] = hook_secret
    if identity:  # the dashboard signs users in through the dev provider
        connection.oidc_ca_pem = vault_ca_pem
        connection.oidc_client_secret = identity.client_secret
        connection.oidc_scopes = "openid profile"
    return connection, outputs
