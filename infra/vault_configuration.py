"""Vault's configuration as code: KV v2, AppRole for the executor, JWT/OIDC for users, policies, audit.

Targets any server through one `VaultConnection` (address, a config-admin token, optional CA), so it
configures a cluster the stack made or an existing Vault alike.
"""
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi

from infra.audit import audit_devices
from infra.database_secrets import DatabaseSecrets, DatabaseSecretsArgs
from infra.policies import POLICY_NAMES, render_policy
from infra.providers import vault
from infra.providers.tls import SigningKey
from infra.providers.vault import VaultConnection
from infra.server_paths import AUDIT_LOG

APPROLE_PATH = "approle"
JWT_PATH = "jwt"
DATABASE_PATH = "database"


def config_admin_policy(kv_path: str, approle_path: str = APPROLE_PATH, jwt_path: str = JWT_PATH,
                        db_path: str = DATABASE_PATH) -> str:
    """The config-admin policy text, for whoever writes it (the bootstrap, or this component as root)."""
    return render_policy("config-admin", kv_path=kv_path, approle_path=approle_path, jwt_path=jwt_path,
                         db_path=db_path)


# Vault's user role accepts only tokens the service signs (service/vault/login.py) after it verified the
# user's own token and the user's registered spelling: a token from the identity provider, or one a job
# made up (`CAROL` for `carol`), cannot log in at Vault. The service's settings carry the same two names.
SERVICE_LOGIN_ISSUER = "vault-envvars-service"
SERVICE_LOGIN_AUDIENCE = "vault-envvars:user-role"
SERVICE_LOGIN_ALGORITHM = "ES256"


@dataclass
class JwtAuthArgs:
    """Vault's JWT mount for users' sessions. It trusts one key: the service's login key, which this
    component generates (`service_login_key`) and the service signs short login tokens with."""

    type: str = "jwt"  # "jwt" or "oidc" (the mount type; both verify bearer JWTs)
    token_ttl: int = 900
    token_max_ttl: int = 3600
    # How far Vault stretches a login token's exp/nbf/iat (Vault's defaults: 150 s, 150 s, 60 s). The
    # service signs a token just before it logs in with it: a short leeway keeps a leaked one short-lived.
    leeway_seconds: int = 30

    def config_data(self, public_pem: pulumi.Input[str]) -> pulumi.Output:
        """The JWT mount's config: the service's public key, its issuer, its algorithm."""
        # Without the trailing newline, as Vault reads it back: a refresh then shows no drift.
        return pulumi.Output.from_input(public_pem).apply(lambda pem: {
            "jwt_validation_pubkeys": [pem.strip()], "bound_issuer": SERVICE_LOGIN_ISSUER,
            "jwt_supported_algs": [SERVICE_LOGIN_ALGORITHM], "default_role": "user",
        })


@dataclass
class AppRoleArgs:
    """The executor's AppRole: short-lived tokens; secret ids with a TTL and a use limit (0 and 0: a secret id
    that never runs out, which `bound_cidrs` should then confine to where its holder runs)."""

    token_ttl: int = 1200
    token_max_ttl: int = 3600
    secret_id_ttl: int = 30 * 86400
    secret_id_num_uses: int = 1000
    bound_cidrs: pulumi.Input[list[str]] = field(default_factory=list)


@dataclass
class ResourceHints:
    """What resolves a failure of one of the resources, for whoever configures a Vault it did not make
    (the `existing` stack names its settings): appended to Vault's own words. Empty: Vault's words only."""

    kv_in_use: str = ""  # the KV mount's path is taken (by our kind of mount or another)
    auth_in_use: str = ""  # the AppRole's or the JWT mount's path is taken
    jwt_config_rejected: str = ""  # Vault refused the users' key source (it fetches a URL when written)
    audit_rejected: str = ""  # Vault refused an audit device through the API (OpenBao does by default)


@dataclass
class VaultConfigurationArgs:
    connection: VaultConnection  # with a config-admin token (root only while bootstrapping)
    jwt: JwtAuthArgs = field(default_factory=JwtAuthArgs)
    approle: AppRoleArgs = field(default_factory=AppRoleArgs)
    # The snapshot job logs in once per run: short tokens, a secret id good for a month of hourly runs.
    snapshot_approle: AppRoleArgs = field(default_factory=lambda: AppRoleArgs(token_ttl=600, token_max_ttl=1800))
    kv_path: str = "secret"
    kv_max_versions: int = 10
    adopt_kv_mount: bool = False  # dev mode pre-mounts KV v2 at secret/
    approle_path: str = APPROLE_PATH
    jwt_path: str = JWT_PATH
    # Off when the bootstrap wrote config-admin (it then runs as config-admin, which cannot change it).
    manage_admin_policy: bool = True
    # HashiCorp Vault: audit devices through the API. OpenBao: declared in the server config instead.
    audit_via_api: bool = False
    audit_file_path: str = AUDIT_LOG
    default_lease_ttl: str = "1h"
    max_lease_ttl: str = "24h"
    lockout_threshold: int = 5
    lockout_duration: str = "15m"
    # Raft clusters: autopilot keeps at least this many voters and removes servers dead for 10 minutes.
    autopilot_min_quorum: Optional[int] = None
    # Dynamic env vars: the database secrets engine (connection, jwt_accessor filled in here); None: none.
    database: Optional[DatabaseSecretsArgs] = None
    database_path: str = DATABASE_PATH
    hints: ResourceHints = field(default_factory=ResourceHints)


class VaultConfiguration(pulumi.ComponentResource):
    """Outputs: `kv_path`, `jwt_accessor`, the role id and secret id (secret) of the two AppRole roles:
    `executor_*` for the service's job runner, `snapshot_*` for the snapshot job; and
    `service_login_key` (secret, PEM): the key the service signs users' Vault login tokens with."""

    kv_path: pulumi.Output[str]
    jwt_accessor: pulumi.Output[str]
    executor_role_id: pulumi.Output[str]
    executor_secret_id: pulumi.Output[str]
    snapshot_role_id: pulumi.Output[str]
    snapshot_secret_id: pulumi.Output[str]
    service_login_key: pulumi.Output[str]

    def __init__(self, name: str, args: VaultConfigurationArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:VaultConfiguration", name, None, opts)
        conn, child, hints = args.connection, pulumi.ResourceOptions(parent=self), args.hints
        ttls: dict[str, Any] = dict(default_lease_ttl=args.default_lease_ttl, max_lease_ttl=args.max_lease_ttl)

        kv = vault.Mount(f"{name}-kv", connection=conn, path=args.kv_path, type="kv", options={"version": "2"},
                         description="env-var values, one secret per env var under users/<user>/",
                         adopt=args.adopt_kv_mount, hints={"in_use": hints.kv_in_use}, **ttls, opts=child)
        vault.Endpoint(f"{name}-kv-config", connection=conn, path=f"{args.kv_path}/config",
                       data={"max_versions": args.kv_max_versions, "cas_required": False},
                       delete_on_destroy=False,
                       opts=pulumi.ResourceOptions(parent=self, depends_on=[kv]))

        lockout = {"lockout_threshold": str(args.lockout_threshold), "lockout_duration": args.lockout_duration,
                   "lockout_counter_reset": args.lockout_duration}
        approle = vault.Mount(f"{name}-approle", connection=conn, path=args.approle_path, type="approle", kind="auth",
                              description="the env-vars service's executor", user_lockout=lockout,
                              hints={"in_use": hints.auth_in_use}, **ttls, opts=child)
        jwt = vault.Mount(f"{name}-jwt", connection=conn, path=args.jwt_path, type=args.jwt.type, kind="auth",
                          description="dashboard users (OIDC/JWT bearer tokens)",
                          hints={"in_use": hints.auth_in_use}, **ttls, opts=child)
        login_key = SigningKey(f"{name}-service-login-key", opts=child)
        jwt_config = vault.Endpoint(
            f"{name}-jwt-config", connection=conn, path=f"auth/{args.jwt_path}/config",
            data=args.jwt.config_data(login_key.public_pem),
            delete_on_destroy=False, hints={"rejected": hints.jwt_config_rejected},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[jwt]))

        db_path = args.database.path if args.database else args.database_path
        values = dict(kv_path=args.kv_path, approle_path=args.approle_path, jwt_path=args.jwt_path, db_path=db_path)
        policies = {}
        for policy in POLICY_NAMES:
            if policy == "config-admin" and not args.manage_admin_policy:
                continue
            text: pulumi.Input[str] = (
                jwt.accessor.apply(lambda acc: render_policy("user", **values, jwt_accessor=acc))
                if policy == "user" else render_policy(policy, **values))
            policies[policy] = vault.Endpoint(
                f"{name}-policy-{policy}", connection=conn, path=f"sys/policies/acl/{policy}",
                data=pulumi.Output.from_input(text).apply(lambda t: {"policy": t}), opts=child)

        credentials = {}
        for role, role_args in (("executor", args.approle), ("snapshot-operator", args.snapshot_approle)):
            role_endpoint = vault.Endpoint(
                f"{name}-{role}-role", connection=conn, path=f"auth/{args.approle_path}/role/{role}",
                data={
                    "token_policies": [role],
                    "token_ttl": role_args.token_ttl,
                    "token_max_ttl": role_args.token_max_ttl,
                    "token_type": "service",
                    "bind_secret_id": True,
                    "secret_id_ttl": role_args.secret_id_ttl,
                    "secret_id_num_uses": role_args.secret_id_num_uses,
                    "secret_id_bound_cidrs": role_args.bound_cidrs,
                    "token_bound_cidrs": role_args.bound_cidrs,
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[approle, policies[role]]))
            credentials[role] = vault.AppRoleCredential(
                f"{name}-{role}-credential", connection=conn, mount=args.approle_path, role=role,
                # The secret id's limits are fixed when it is issued: a new limit issues a new one.
                metadata={"issued_to": f"{role} of the env-vars deployment",
                          **({"limits": "none, network-bound"}
                             if not role_args.secret_id_ttl and not role_args.secret_id_num_uses else {})},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role_endpoint]))
        vault.Endpoint(
            f"{name}-user-role", connection=conn, path=f"auth/{args.jwt_path}/role/user",
            data={
                "role_type": "jwt",
                "user_claim": "sub",
                "bound_audiences": [SERVICE_LOGIN_AUDIENCE],
                "clock_skew_leeway": args.jwt.leeway_seconds,
                "expiration_leeway": args.jwt.leeway_seconds,
                "not_before_leeway": args.jwt.leeway_seconds,
                "token_policies": ["user"],
                "token_ttl": args.jwt.token_ttl,
                "token_max_ttl": args.jwt.token_max_ttl,
                "token_type": "service",
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[jwt_config, policies["user"]]))
        if args.autopilot_min_quorum:
            # Durations in Go's spelling, as Vault reports them, so refresh compares equal.
            vault.Endpoint(f"{name}-autopilot", connection=conn, path="sys/storage/raft/autopilot/configuration", data={
                "cleanup_dead_servers": True,
                "dead_server_last_contact_threshold": "10m0s",
                "min_quorum": args.autopilot_min_quorum,
                "server_stabilization_time": "10s",
            }, delete_on_destroy=False, opts=child)

        if args.database:
            args.database.connection, args.database.jwt_accessor = conn, jwt.accessor
            DatabaseSecrets(f"{name}-database", args.database,
                            opts=pulumi.ResourceOptions(parent=self, depends_on=list(policies.values())))

        if args.audit_via_api:
            for device in audit_devices(args.audit_file_path):
                vault.AuditDevice(f"{name}-audit-{device.path}", connection=conn, path=device.path, type=device.type,
                                  options=device.options, description=device.description,
                                  hints={"rejected": hints.audit_rejected}, opts=child)

        self.kv_path = pulumi.Output.from_input(args.kv_path)
        self.jwt_accessor = jwt.accessor
        self.executor_role_id = credentials["executor"].role_id
        self.executor_secret_id = pulumi.Output.secret(credentials["executor"].secret_id)
        self.snapshot_role_id = credentials["snapshot-operator"].role_id
        self.snapshot_secret_id = pulumi.Output.secret(credentials["snapshot-operator"].secret_id)
        self.service_login_key = pulumi.Output.secret(login_key.key_pem)
        self.register_outputs({
            "service_login_key": self.service_login_key,
            "kv_path": self.kv_path,
            "jwt_accessor": self.jwt_accessor,
            "executor_role_id": self.executor_role_id,
            "executor_secret_id": self.executor_secret_id,
            "snapshot_role_id": self.snapshot_role_id,
            "snapshot_secret_id": self.snapshot_secret_id,
        })
