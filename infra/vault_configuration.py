"""Vault's configuration as code: KV v2, AppRole for the executor, JWT/OIDC for users, policies, audit.

Targets any server through one `VaultConnection` (address, a config-admin token, optional CA), so it
configures a cluster the stack made or an existing Vault alike.
"""
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi

from infra.audit import audit_devices
from infra.policies import POLICY_NAMES, render_policy
from infra.providers import vault
from infra.providers.vault import VaultConnection
from infra.server_paths import AUDIT_LOG

APPROLE_PATH = "approle"
JWT_PATH = "jwt"


def config_admin_policy(kv_path: str, approle_path: str = APPROLE_PATH, jwt_path: str = JWT_PATH) -> str:
    """The config-admin policy text, for whoever writes it (the bootstrap, or this component as root)."""
    return render_policy("config-admin", kv_path=kv_path, approle_path=approle_path, jwt_path=jwt_path)


@dataclass
class JwtAuthArgs:
    """How Vault verifies users' tokens: exactly one of discovery URL, JWKS URL or static PEM keys."""

    bound_audiences: pulumi.Input[list[str]]
    bound_issuer: str = ""
    oidc_discovery_url: str = ""
    jwks_url: str = ""
    validation_pubkeys: list[str] = field(default_factory=list)
    ca_pem: pulumi.Input[str] = ""  # CA of the discovery/JWKS URL, when a private one signs it
    type: str = "jwt"  # "jwt" or "oidc" (the mount type; both verify bearer JWTs)
    user_claim: str = "sub"
    token_ttl: int = 900
    token_max_ttl: int = 3600

    def key_source(self) -> dict:
        sources = {
            "oidc_discovery_url": self.oidc_discovery_url,
            "jwks_url": self.jwks_url,
            "jwt_validation_pubkeys": self.validation_pubkeys,
        }
        given = {k: v for k, v in sources.items() if v}
        if len(given) != 1:
            raise ValueError("JWT auth needs exactly one of oidc_discovery_url, jwks_url, validation_pubkeys")
        return given

    def config_data(self) -> pulumi.Output:
        """The JWT mount's config: the key source, its CA if any, the bound issuer."""
        source = self.key_source()
        ca_key = {"oidc_discovery_url": "oidc_discovery_ca_pem", "jwks_url": "jwks_ca_pem"}.get(next(iter(source)))
        return pulumi.Output.from_input(self.ca_pem).apply(lambda ca: {
            **source, "bound_issuer": self.bound_issuer, "default_role": "user",
            **({ca_key: ca} if ca and ca_key else {}),
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
class VaultConfigurationArgs:
    connection: VaultConnection  # with a config-admin token (root only while bootstrapping)
    jwt: JwtAuthArgs
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


class VaultConfiguration(pulumi.ComponentResource):
    """Outputs: `kv_path`, `jwt_accessor`, and the role id and secret id (secret) of the two AppRole
    roles: `executor_*` for the service's job runner, `snapshot_*` for the snapshot job."""

    kv_path: pulumi.Output[str]
    jwt_accessor: pulumi.Output[str]
    executor_role_id: pulumi.Output[str]
    executor_secret_id: pulumi.Output[str]
    snapshot_role_id: pulumi.Output[str]
    snapshot_secret_id: pulumi.Output[str]

    def __init__(self, name: str, args: VaultConfigurationArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:VaultConfiguration", name, None, opts)
        conn, child = args.connection, pulumi.ResourceOptions(parent=self)
        ttls: dict[str, Any] = dict(default_lease_ttl=args.default_lease_ttl, max_lease_ttl=args.max_lease_ttl)

        kv = vault.Mount(f"{name}-kv", connection=conn, path=args.kv_path, type="kv", options={"version": "2"},
                         description="env-var values, one secret per env var under users/<user>/",
                         adopt=args.adopt_kv_mount, **ttls, opts=child)
        vault.Endpoint(f"{name}-kv-config", connection=conn, path=f"{args.kv_path}/config",
                       data={"max_versions": args.kv_max_versions, "cas_required": False},
                       delete_on_destroy=False,
                       opts=pulumi.ResourceOptions(parent=self, depends_on=[kv]))

        lockout = {"lockout_threshold": str(args.lockout_threshold), "lockout_duration": args.lockout_duration,
                   "lockout_counter_reset": args.lockout_duration}
        approle = vault.Mount(f"{name}-approle", connection=conn, path=args.approle_path, type="approle", kind="auth",
                              description="the env-vars service's executor", user_lockout=lockout,
                              **ttls, opts=child)
        jwt = vault.Mount(f"{name}-jwt", connection=conn, path=args.jwt_path, type=args.jwt.type, kind="auth",
                          description="dashboard users (OIDC/JWT bearer tokens)", **ttls, opts=child)
        jwt_config = vault.Endpoint(
            f"{name}-jwt-config", connection=conn, path=f"auth/{args.jwt_path}/config",
            data=args.jwt.config_data(),
            delete_on_destroy=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[jwt]))

        values = dict(kv_path=args.kv_path, approle_path=args.approle_path, jwt_path=args.jwt_path)
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
                "user_claim": args.jwt.user_claim,
                "bound_audiences": args.jwt.bound_audiences,
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

        if args.audit_via_api:
            for device in audit_devices(args.audit_file_path):
                vault.AuditDevice(f"{name}-audit-{device.path}", connection=conn, path=device.path, type=device.type,
                                  options=device.options, description=device.description, opts=child)

        self.kv_path = pulumi.Output.from_input(args.kv_path)
        self.jwt_accessor = jwt.accessor
        self.executor_role_id = credentials["executor"].role_id
        self.executor_secret_id = pulumi.Output.secret(credentials["executor"].secret_id)
        self.snapshot_role_id = credentials["snapshot-operator"].role_id
        self.snapshot_secret_id = pulumi.Output.secret(credentials["snapshot-operator"].secret_id)
        self.register_outputs({
            "kv_path": self.kv_path,
            "jwt_accessor": self.jwt_accessor,
            "executor_role_id": self.executor_role_id,
            "executor_secret_id": self.executor_secret_id,
            "snapshot_role_id": self.snapshot_role_id,
            "snapshot_secret_id": self.snapshot_secret_id,
        })
