"""A real OIDC issuer for the dev stack, without internet: Vault's own OIDC identity provider, with
demo users who log in with userpass. Production points the JWT mount at a real IdP instead."""
from dataclasses import dataclass, field
from typing import Optional

import pulumi

from infra.providers import vault
from infra.providers.random import RandomSecret
from infra.providers.vault import VaultConnection
from infra.providers.vault_identity import UserEntity

PROVIDER_NAME = "envvars"
CLIENT_NAME = "env-vars"
# The authorization-code flow of tools/dev_token.py gets the code from the API, never visits this.
CLI_REDIRECT_URI = "http://127.0.0.1/dev-token-callback"


def issuer_url(base_url: str) -> str:
    """The `iss` of tokens from the dev provider, as clients reaching Vault at `base_url` see it."""
    return f"{base_url}/v1/identity/oidc/provider/{PROVIDER_NAME}"


def jwks_url(base_url: str) -> str:
    return f"{issuer_url(base_url)}/.well-known/keys"


def browser_login_url(vault_url: str) -> str:
    """Where browsers log in to the dev provider: the Vault UI's authorize page at a URL they can reach."""
    return f"{vault_url}/ui/vault/identity/oidc/provider/{PROVIDER_NAME}/authorize"


@dataclass
class DevIdentityArgs:
    connection: VaultConnection
    # The issuer's base URL as the service and Vault reach it (the container network alias).
    issuer_base_url: str = "http://vault:8200"
    demo_users: list[str] = field(default_factory=lambda: ["alice", "bob"])
    # The dashboard's callback URLs (as browsers reach the service); the CLI's is always registered.
    redirect_uris: list[pulumi.Input[str]] = field(default_factory=list)


class DevIdentity(pulumi.ComponentResource):
    """Outputs: `issuer` (the `iss` of ID tokens), `client_id` (their audience), `client_secret` (secret),
    `demo_passwords` (secret: {user: password}) and `demo_subjects` ({user: the `sub` of their tokens})."""

    issuer: pulumi.Output[str]
    client_id: pulumi.Output[str]
    client_secret: pulumi.Output[str]
    demo_passwords: pulumi.Output[dict]
    demo_subjects: pulumi.Output[dict]

    def __init__(self, name: str, args: DevIdentityArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:DevIdentity", name, None, opts)
        conn, child = args.connection, pulumi.ResourceOptions(parent=self)
        key = vault.Endpoint(f"{name}-key", connection=conn, path=f"identity/oidc/key/{PROVIDER_NAME}", data={
            "algorithm": "RS256", "allowed_client_ids": ["*"],
            "rotation_period": 86400, "verification_ttl": 86400,
        }, opts=child)
        userpass = vault.Mount(f"{name}-userpass", connection=conn, path="userpass", type="userpass", kind="auth",
                               description="dev demo users", opts=child)
        # `profile` puts the userpass login name in ID tokens, for the dashboard to greet users by.
        profile = vault.Endpoint(f"{name}-scope-profile", connection=conn, path="identity/oidc/scope/profile",
                                 data=userpass.accessor.apply(lambda acc: {
                                     "description": "the user's login name",
                                     "template": '{"preferred_username": {{identity.entity.aliases.%s.name}}}' % acc}),
                                 opts=child)
        provider = vault.Endpoint(
            f"{name}-provider", connection=conn, path=f"identity/oidc/provider/{PROVIDER_NAME}",
            data={"issuer": args.issuer_base_url, "allowed_client_ids": ["*"], "scopes_supported": ["profile"]},
            # Vault reads the issuer back with the provider's path appended: compared, it was an update on every
            # `up --refresh`.
            write_only=["issuer"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[key, profile]))
        oidc_client = vault.Endpoint(
            f"{name}-client", connection=conn, path=f"identity/oidc/client/{CLIENT_NAME}",
            data=pulumi.Output.all(*args.redirect_uris).apply(lambda uris: {
                "key": PROVIDER_NAME, "redirect_uris": [CLI_REDIRECT_URI, *uris], "assignments": ["allow_all"],
                "id_token_ttl": 900, "access_token_ttl": 900, "client_type": "confidential"}),
            read_back=["client_id"], secret_read_back=["client_secret"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[provider]))
        passwords, subjects = {}, {}
        for user in args.demo_users:
            password = RandomSecret(f"{name}-{user}-password", length=18, opts=child)
            vault.Endpoint(f"{name}-{user}", connection=conn, path=f"auth/userpass/users/{user}",
                           data=password.result.apply(lambda p: {"password": p, "token_ttl": 3600}),
                           write_only=["password"],
                           opts=pulumi.ResourceOptions(parent=self, depends_on=[userpass]))
            passwords[user] = password.result
            # The provider's `sub` is the user's entity id: made now (with the login name as its userpass
            # alias, which Vault logs the user in to), so grants can name the user before the first sign-in.
            subjects[user] = UserEntity(f"{name}-{user}-entity", connection=conn, alias=user,
                                        mount_accessor=userpass.accessor, opts=child).entity_id
        self.issuer = provider.id.apply(lambda _: issuer_url(args.issuer_base_url))
        self.client_id = oidc_client.response.apply(lambda r: r["client_id"])
        self.client_secret = pulumi.Output.secret(oidc_client.secret_response.apply(lambda r: r["client_secret"]))
        self.demo_passwords = pulumi.Output.secret(passwords)
        self.demo_subjects = pulumi.Output.all(**subjects)
        self.register_outputs({"issuer": self.issuer, "client_id": self.client_id,
                               "client_secret": self.client_secret, "demo_passwords": self.demo_passwords,
                               "demo_subjects": self.demo_subjects})
