"""Dynamic database credentials as code: the database secrets engine, its connections and roles, the
grant of each role (a policy and an identity group of the granted users' entities), and the token role
of the executor's per-job tokens (docs/dynamic-env-vars.md)."""
from dataclasses import dataclass, field
from typing import Callable, Optional

import pulumi

from infra.policies import render_policy
from infra.providers import vault
from infra.providers.vault import VaultConnection
from infra.providers.vault_identity import UserEntity

JOB_TOKEN_ROLE = "envvars-job"  # noqa: S105 (a role name, not a secret)
JOB_MINT_POLICY = "envvars-job-mint"


def role_policy_name(role: str) -> str:
    return f"envvars-db-{role}"


@dataclass
class DatabaseConnectionArgs:
    name: str
    connection_url: str
    username: str
    plugin: str = "postgresql-database-plugin"
    verify_connection: bool = True


@dataclass
class DatabaseRoleArgs:
    name: str
    connection: str
    creation_statements: list[str]
    revocation_statements: list[str]
    default_ttl: int = 3600
    max_ttl: int = 86400
    users: list[str] = field(default_factory=list)
    # Users whose `sub` is known only at deploy time (the dev stack's demo users): {name: sub}.
    subjects: dict[str, pulumi.Input[str]] = field(default_factory=dict)


@dataclass
class DatabaseSecretsArgs:
    connection: VaultConnection
    jwt_accessor: pulumi.Input[str]  # the users' auth mount: grants name users by their alias there
    connections: list[DatabaseConnectionArgs]
    roles: list[DatabaseRoleArgs]
    passwords: Optional[pulumi.Input[dict]] = None  # {connection name: password}, a secret
    path: str = "database"
    # A job's token lives its timeout plus the lease grace; this caps it (the service's max timeout + grace).
    job_token_max_ttl: int = 2 * 3600


def _connection_data(db: DatabaseConnectionArgs, allowed: list[str]) -> Callable[[dict], dict]:
    def data(passwords: dict) -> dict:
        return {"plugin_name": db.plugin, "connection_url": db.connection_url, "username": db.username,
                "password": (passwords or {}).get(db.name, ""), "allowed_roles": allowed,
                "verify_connection": db.verify_connection}
    return data


def _group_data(role: str) -> Callable[[list], dict]:
    def data(entity_ids: list) -> dict:
        return {"type": "internal", "policies": [role_policy_name(role)], "member_entity_ids": sorted(entity_ids),
                "metadata": {"managed_by": "vault-envvars"}}
    return data


class DatabaseSecrets(pulumi.ComponentResource):
    """Output: `path` (the engine's mount)."""

    path: pulumi.Output[str]

    def __init__(self, name: str, args: DatabaseSecretsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:DatabaseSecrets", name, None, opts)
        conn, child = args.connection, pulumi.ResourceOptions(parent=self)
        mount = vault.Mount(f"{name}-mount", connection=conn, path=args.path, type="database",
                            description="dynamic database credentials, one lease per job", opts=child)
        passwords: pulumi.Output[dict] = pulumi.Output.secret(args.passwords or {})
        configs = {}
        for db in args.connections:
            allowed = [r.name for r in args.roles if r.connection == db.name]
            data = passwords.apply(_connection_data(db, allowed))
            # Vault never returns the password and reports the URL and login under connection_details. Not
            # deleted on its own: unmounting revokes the outstanding leases, which needs the connection (tried:
            # with it deleted first, the unmount fails "failed to find entry for connection").
            configs[db.name] = vault.Endpoint(
                f"{name}-config-{db.name}", connection=conn, path=f"{args.path}/config/{db.name}", data=data,
                write_only=["password", "connection_url", "username", "verify_connection"], delete_on_destroy=False,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[mount]))
        entities: dict[str, UserEntity] = {}
        for role in args.roles:
            vault.Endpoint(
                f"{name}-role-{role.name}", connection=conn, path=f"{args.path}/roles/{role.name}", data={
                    "db_name": role.connection, "creation_statements": role.creation_statements,
                    "revocation_statements": role.revocation_statements,
                    "default_ttl": role.default_ttl, "max_ttl": role.max_ttl,
                }, opts=pulumi.ResourceOptions(parent=self, depends_on=[configs[role.connection]]))
            policy = vault.Endpoint(
                f"{name}-policy-{role.name}", connection=conn, path=f"sys/policies/acl/{role_policy_name(role.name)}",
                data={"policy": render_policy("database-role", db_path=args.path, role=role.name)}, opts=child)
            granted = {**{u: u for u in role.users}, **role.subjects}
            for user, sub in granted.items():
                if user not in entities:
                    entities[user] = UserEntity(f"{name}-user-{user}", connection=conn, alias=sub,
                                                mount_accessor=args.jwt_accessor, opts=child)
            members = pulumi.Output.all(*[entities[u].entity_id for u in granted])
            vault.Endpoint(
                f"{name}-group-{role.name}", connection=conn, path=f"identity/group/name/{role_policy_name(role.name)}",
                data=members.apply(_group_data(role.name)),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]))
        mint = vault.Endpoint(
            f"{name}-policy-job-mint", connection=conn, path=f"sys/policies/acl/{JOB_MINT_POLICY}",
            data={"policy": render_policy("job-mint", db_path=args.path)}, opts=child)
        # Orphans (a job's credential must not die with the executor's own AppRole token, which is renewed
        # and replaced on its own schedule), never renewable, one policy only.
        vault.Endpoint(
            f"{name}-job-token-role", connection=conn, path=f"auth/token/roles/{JOB_TOKEN_ROLE}", data={
                "allowed_policies": [JOB_MINT_POLICY], "orphan": True, "renewable": False,
                "token_type": "service", "token_explicit_max_ttl": args.job_token_max_ttl,
                "token_no_default_policy": False,
            }, opts=pulumi.ResourceOptions(parent=self, depends_on=[mint]))
        self.path = mount.id.apply(lambda _: args.path)
        self.register_outputs({"path": self.path})
