"""The dev stack's own database for dynamic env vars (stack setting `devDatabase`, default true): a
PostgreSQL container, its connection in Vault's database secrets engine and a `readonly` role granted to
the demo user alice (not bob), beside whatever the stack's database settings declare (docs/stacks.md, "The dev stack")."""
from typing import Optional

import pulumi

from infra.database_secrets import DatabaseConnectionArgs, DatabaseRoleArgs, DatabaseSecretsArgs
from infra.postgres_docker import PostgresDocker
from infra.providers.vault import VaultConnection
from stacks.config import ConfigError, DatabaseSettings
from stacks.vault import database_args

CONNECTION = "dev"
ROLE = "readonly"
GRANTED = ("alice",)  # demo users granted ROLE; bob is refused, naming it


def role_statements(database: str) -> tuple[list[str], list[str]]:
    """A login that may connect and read (the admin owns the database, so its grants take effect and
    must be revoked before the role can be dropped)."""
    create = ['CREATE ROLE "{{name}}" WITH LOGIN PASSWORD \'{{password}}\' VALID UNTIL \'{{expiration}}\';',
              f'GRANT CONNECT ON DATABASE "{database}" TO "{{{{name}}}}";',
              'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";']
    revoke = ['REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{{name}}";',
              f'REVOKE ALL ON DATABASE "{database}" FROM "{{{{name}}}}";',
              'DROP ROLE IF EXISTS "{{name}}";']
    return create, revoke


def _subject(subjects: pulumi.Output[dict], user: str) -> pulumi.Output[str]:
    return subjects.apply(lambda s: str(s[user]))


def dev_database_args(settings: Optional[DatabaseSettings], connection: VaultConnection, pg: PostgresDocker,
                      subjects: pulumi.Output[dict]) -> DatabaseSecretsArgs:
    """The stack's database settings (if any) plus the dev PostgreSQL's connection and role; `subjects`:
    the demo users' `sub` ({user: entity id}, the dev identity provider's)."""
    args = database_args(settings, connection) or DatabaseSecretsArgs(
        connection=connection, jwt_accessor="", connections=[], roles=[])
    if any(c.name == CONNECTION for c in args.connections) or any(r.name == ROLE for r in args.roles):
        raise ConfigError(f"stack config: the connection {CONNECTION!r} and the role {ROLE!r} are the dev stack's own "
                          "(vault-envvars:devDatabase); name yours otherwise or set devDatabase false")
    create, revoke = role_statements(pg.database)
    args.connections.append(DatabaseConnectionArgs(
        name=CONNECTION, username=pg.admin,
        connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@{pg.host_name}:{pg.port}/{pg.database}?sslmode=disable"))
    args.roles.append(DatabaseRoleArgs(
        name=ROLE, connection=CONNECTION, creation_statements=create, revocation_statements=revoke,
        default_ttl=3600, max_ttl=86400, subjects={f"demo-{u}": _subject(subjects, u) for u in GRANTED}))
    # Through pg.host, Vault's connection waits for the server to accept connections (it verifies the login).
    args.passwords = pulumi.Output.all(pulumi.Output.from_input(args.passwords or {}), pg.admin_password,
                                       pg.host).apply(lambda pw: {**pw[0], CONNECTION: pw[1]})
    return args
