"""A real OIDC issuer for the dev stack, without internet: Vault's own OIDC identity provider, with
demo users who log in with userpass. Production points the JWT mount at a real IdP instead."""
from dataclasses import dataclass, field
from typing import Optional

import pulumi

from infra.providers import vault
from infra.providers.random import RandomSecret

PROVIDER_NAME = "envvars"
CLIENT_NAME = "env-vars"
# The authorization-code flow of tools/dev_token.py gets the code from the API, never visits this.
CLI_REDIRECT_URI = "http://127.0.0.1/dev-token-callback"


def issuer_url(base_url: str) -> str:
    """The `iss` of tokens from the dev provider, as clients reaching Vault at `base_url` see it."""
    return f"{base_url}/v1/identity/oidc/provider/{PROVIDER_NAME}"


def jwks_url(base_url: str) -> str:
    return f"{issuer_url(base_url)}/.well-known/keys"


@dataclass
class DevIdentityArgs:
    address: pulumi.Input[str]
    token: pulumi.Input[str]
    ca_cert_pem: pulumi.Input[str] = ""
    # The issuer's base URL as the service and Vault reach it (the container network alias).
    issuer_base_url: str = "http://vault:8200"
    demo_users: list[str] = field(default_factory=lambda: ["alice", "bob"])
    redirect_uris: list[str] = field(default_factory=lambda: [CLI_REDIRECT_URI])


class DevIdentity(pulumi.ComponentResource):
    """Outputs: `issuer` (the `iss` of ID tokens), `client_id` (their audience), `client_secret` (secret)
    and `demo_passwords` (secret: {user: password})."""

    issuer: pulumi.Output[str]
    client_id: pulumi.Output[str]
    client_secret: pulumi.Output[str]
    demo_passwords: pulumi.Output[dict]

    def __init__(self, name: str, args: DevIdentityArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:DevIdentity", name, None, opts)
        conn = dict(address=args.address, token=args.token, ca_cert_pem=args.ca_cert_pem)
        child = pulumi.ResourceOptions(parent=self)
        key = vault.Endpoint(f"{name}-key", **conn, path=f"identity/oidc/key/{PROVIDER_NAME}", data={
            "algorithm": "RS256", "allowed_client_ids": ["*"],
            "rotation_period": 86400, "verification_ttl": 86400,
        }, opts=child)
        provider = vault.Endpoint(
            f"{name}-provider", **conn, path=f"identity/oidc/provider/{PROVIDER_NAME}",
            data={"issuer": args.issuer_base_url, "allowed_client_ids": ["*"]},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[key]))
        oidc_client = vault.Endpoint(
            f"{name}-client", **conn, path=f"identity/oidc/client/{CLIENT_NAME}",
            data={"key": PROVIDER_NAME, "redirect_uris": args.redirect_uris, "assignments": ["allow_all"],
                  "id_token_ttl": 900, "access_token_ttl": 900, "client_type": "confidential"},
            read_back=["client_id"], secret_read_back=["client_secret"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[provider]))
        userpass = vault.Mount(f"{name}-userpass", **conn, path="userpass", type="userpass", kind="auth",
                               description="dev demo users", opts=child)
        passwords = {}
        for user in args.demo_users:
            password = RandomSecret(f"{name}-{user}-password", length=18, opts=child)
            vault.Endpoint(f"{name}-{user}", **conn, path=f"auth/userpass/users/{user}",
                           data=password.result.apply(lambda p: {"password": p, "token_ttl": 3600}),
                           write_only=["password"],
                           opts=pulumi.ResourceOptions(parent=self, depends_on=[userpass]))
            passwords[user] = password.result
        self.issuer = provider.id.apply(lambda _: issuer_url(args.issuer_base_url))
        self.client_id = oidc_client.response.apply(lambda r: r["client_id"])
        self.client_secret = pulumi.Output.secret(oidc_client.secret_response.apply(lambda r: r["client_secret"]))
        self.demo_passwords = pulumi.Output.secret(passwords)
        self.register_outputs({"issuer": self.issuer, "client_id": self.client_id,
                               "client_secret": self.client_secret, "demo_passwords": self.demo_passwords})
