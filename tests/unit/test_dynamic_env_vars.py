"""Dynamic env vars without servers: the stack settings (errors name the key), the engine's configuration
with Pulumi mocks, the policies, the service's templates and request validation."""
import json
import re

import pydantic
import pytest

from infra.database_secrets import JOB_MINT_POLICY, JOB_TOKEN_ROLE
from infra.policies import render_policy
from infra.providers.vault import VaultConnection
from infra.vault_configuration import JwtAuthArgs, VaultConfiguration, VaultConfigurationArgs, config_admin_policy
from service.executor.leases import render
from service.schemas import DynamicEnvVarCreate, ExecutionCreate
from stacks.config import ConfigError, VaultSettings
from stacks.vault import database_args
from tests.unit.helpers import run

pytestmark = pytest.mark.unit

SOURCE = {"jwks_url": "http://127.0.0.1:8200/keys", "issuer": "http://vault:8200/iss"}
CONN = {"name": "app", "username": "vaultadmin",
        "connectionUrl": "postgresql://{{username}}:{{password}}@db:5432/app?sslmode=disable"}
ROLE = {"name": "reader", "connection": "app", "creationStatements": ['CREATE ROLE "{{name}}" LOGIN'],
        "revocationStatements": ['DROP ROLE "{{name}}"'], "defaultTtl": "15m", "maxTtl": "2h",
        "users": ["alice", "bob"]}


def _cfg(conns=None, roles=None, **extra) -> dict:
    return {"databaseConnections": json.dumps([CONN] if conns is None else conns),
            "databaseRoles": json.dumps([ROLE] if roles is None else roles), **extra}


@pytest.mark.parametrize("mocks", [_cfg()], indirect=True)
def test_database_settings_are_typed(mocks):
    db = VaultSettings.load(default_key_source=SOURCE).database
    assert db is not None and db.path == "database"
    [conn], [role] = db.connections, db.roles
    assert (conn.name, conn.plugin, conn.username, conn.verify_connection) == (
        "app", "postgresql-database-plugin", "vaultadmin", True)
    assert (role.name, role.connection, role.default_ttl, role.max_ttl, role.users) == (
        "reader", "app", 900, 7200, ["alice", "bob"])


def test_no_database_settings_no_engine(mocks):
    assert VaultSettings.load(default_key_source=SOURCE).database is None


@pytest.mark.parametrize("mocks,message", [
    (_cfg(roles=[{**ROLE, "connection": "other"}]),
     "vault-envvars:databaseRoles[0].connection = 'other' is not allowed; allowed values: app"),
    (_cfg(roles=[{**ROLE, "defaultTtl": "3h"}]),
     "vault-envvars:databaseRoles[0].defaultTtl must not exceed vault-envvars:databaseRoles[0].maxTtl"),
    (_cfg(roles=[{**ROLE, "maxTtl": "a day"}]), "vault-envvars:databaseRoles[0].maxTtl = 'a day' is not a duration"),
    (_cfg(roles=[{**ROLE, "creationStatements": []}]),
     "vault-envvars:databaseRoles[0].creationStatements must be a non-empty list of SQL statements"),
    (_cfg(roles=[{**ROLE, "users": "alice"}]), "vault-envvars:databaseRoles[0].users must be a list of user ids"),
    (_cfg(roles=[{**ROLE, "ttl": "1h"}]), "vault-envvars:databaseRoles[0].ttl is not a setting; allowed keys:"),
    (_cfg(roles=[ROLE, ROLE]), "vault-envvars:databaseRoles: the name 'reader' is used twice"),
    (_cfg(roles=[{**ROLE, "name": "Bad Name"}]), "vault-envvars:databaseRoles[0].name = 'Bad Name' is not allowed"),
    (_cfg(conns=[{**CONN, "plugin": "mysql-database-plugin"}]),
     "vault-envvars:databaseConnections[0].plugin = 'mysql-database-plugin' is not allowed; "
     "allowed values: postgresql-database-plugin"),
    (_cfg(conns=[{**CONN, "connectionUrl": "postgresql://admin:hunter2@db/app"}]),
     "vault-envvars:databaseConnections[0].connectionUrl must be a postgresql:// URL with the placeholders"),
    (_cfg(conns=[{k: v for k, v in CONN.items() if k != "username"}]),
     "vault-envvars:databaseConnections[0].username is required"),
    ({"databaseRoles": "{}"}, "vault-envvars:databaseRoles must be a list"),
], indirect=["mocks"])
def test_bad_database_settings_name_the_key(mocks, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        VaultSettings.load(default_key_source=SOURCE)


@pytest.mark.parametrize("mocks", [_cfg()], indirect=True)
def test_engine_roles_grants_and_job_token_role(mocks):
    settings = VaultSettings.load(default_key_source=SOURCE)
    conn = VaultConnection("https://vault.example:8200", "admin-token")

    def program():
        VaultConfiguration("vault", VaultConfigurationArgs(
            connection=conn, jwt=JwtAuthArgs(),
            database=database_args(settings.database, conn)))
    run(program)
    mount = mocks.named("vault-database-mount").inputs
    assert (mount["path"], mount["type"], mount["kind"]) == ("database", "database", "secret")
    config = mocks.named("vault-database-config-app").inputs
    assert config["path"] == "database/config/app"
    assert config["data"]["allowed_roles"] == ["reader"] and config["data"]["plugin_name"] == "postgresql-database-plugin"
    assert "password" in config["write_only"] and "data" in mocks.named("vault-database-config-app").secret_inputs
    role = mocks.named("vault-database-role-reader").inputs
    assert role["path"] == "database/roles/reader"
    assert (role["data"]["db_name"], role["data"]["default_ttl"], role["data"]["max_ttl"]) == ("app", 900, 7200)
    policy = mocks.named("vault-database-policy-reader").inputs
    assert policy["path"] == "sys/policies/acl/envvars-db-reader"
    assert 'path "database/creds/reader"' in policy["data"]["policy"]
    group = mocks.named("vault-database-group-reader").inputs
    assert group["path"] == "identity/group/name/envvars-db-reader"
    assert group["data"]["policies"] == ["envvars-db-reader"]
    assert group["data"]["member_entity_ids"] == ["entity-alice", "entity-bob"]
    assert mocks.named("vault-database-user-alice").inputs["mount_accessor"] == "auth_jwt_mock"
    token_role = mocks.named("vault-database-job-token-role").inputs
    assert token_role["path"] == f"auth/token/roles/{JOB_TOKEN_ROLE}"
    assert token_role["data"]["allowed_policies"] == [JOB_MINT_POLICY]
    assert token_role["data"]["orphan"] is True and token_role["data"]["renewable"] is False
    executor = mocks.named("vault-policy-executor").inputs["data"]["policy"]
    assert 'path "sys/leases/revoke/database/creds/*"' in executor
    assert 'path "auth/token/create/envvars-job"' in executor


def test_policies_render_without_placeholders():
    for text in (render_policy("job-mint", db_path="database"),
                 render_policy("database-role", db_path="database", role="reader"),
                 config_admin_policy("secret"), render_policy("executor", kv_path="secret", db_path="database")):
        assert "${" not in text
    # The executor revokes its engine's leases only: nothing else of sys/leases.
    executor = render_policy("executor", kv_path="secret", db_path="database")
    assert re.findall(r'path "sys/leases[^"]*"', executor) == ['path "sys/leases/revoke/database/creds/*"']


def test_templates_render_credential_fields():
    data = {"username": "v-job-1", "password": "pw"}
    assert render("postgresql://{{username}}:{{ password }}@db/app", data) == "postgresql://v-job-1:pw@db/app"
    assert render("{{password}}", data) == "pw"


@pytest.mark.parametrize("body,field", [
    ({"name": "DB", "role": "reader", "env": {"PGUSER": "{{lease_id}}"}}, "env"),
    ({"name": "DB", "role": "reader", "env": {"PGUSER": "static"}}, "env"),
    ({"name": "DB", "role": "reader", "env": {"LD_PRELOAD": "{{username}}"}}, "env"),
    ({"name": "DB", "role": "Reader!", "env": {"PGUSER": "{{username}}"}}, "role"),
    ({"name": "1DB", "role": "reader", "env": {"PGUSER": "{{username}}"}}, "name"),
    ({"name": "DB", "role": "reader", "env": {}}, "env"),
])
def test_bad_dynamic_env_vars_name_the_field(body, field):
    with pytest.raises(pydantic.ValidationError) as e:
        DynamicEnvVarCreate(**body)
    assert e.value.errors()[0]["loc"][0] == field


def test_execution_takes_dynamic_env_var_ids():
    assert ExecutionCreate(command=["env"], dynamic_env_var_ids=["a"]).dynamic_env_var_ids == ["a"]
    with pytest.raises(pydantic.ValidationError):
        ExecutionCreate(command=["env"], dynamic_env_var_ids=["a", "a"])


def test_dashboard_marks_dynamic_env_vars_and_shows_provenance():
    """The pages render what the API gives: the kind, role and TTL; a job's lease, accessor, times."""
    import datetime
    from types import SimpleNamespace

    from service.schemas import DynamicEnvVarOut, ExecutionCredentialOut, ExecutionOut
    from service.ui.dynamic_env_vars import parse_env
    from service.ui.pages import templates

    t = datetime.datetime(2026, 12, 7, 17, 0, tzinfo=datetime.timezone.utc)
    v = SimpleNamespace(csrf="c", user="alice", name="alice")
    decl = DynamicEnvVarOut(id="d1", name="JOBSDB", engine="database", role="reader", description="",
                            env={"PGUSER": "{{username}}", "PGPASSWORD": "{{password}}"}, created_at=t)
    page = templates.env.get_template("dynamic_env_vars.html").render(
        request=None, v=v, items=[decl], grace=30, name="", role="", env="", description="", errors={})
    assert 'data-testid="kind">dynamic<' in page and 'data-testid="role">reader<' in page
    assert "job timeout + 30 s" in page
    form = templates.env.get_template("execution_new.html").render(
        request=None, v=v, env_vars=[], dynamic_env_vars=[decl], recent=[], now=t, command="", timeout="",
        selected=["d1"], errors={})
    assert 'name="dynamic_env_var_ids" value="d1"' in form and "checked" in form
    cred = ExecutionCredentialOut(dynamic_env_var_id="d1", name="JOBSDB", role="reader", env_names=["PGUSER"],
                                  lease_id="database/creds/reader/abc", token_accessor="acc1", ttl_seconds=330,
                                  issued_at=t, revoked_at=t + datetime.timedelta(seconds=5))
    execution = ExecutionOut(id="e1", status="succeeded", command=["env"], env_var_names=[], exit_code=0, error="",
                             created_at=t, started_at=t, finished_at=t, output="", credentials=[cred])
    job = templates.env.get_template("execution.html").render(
        request=None, v=v, execution=execution, command="env", running=False, rerun_error="")
    for shown in ("database/creds/reader/abc", "acc1", "TTL 330 s", "2026-12-07 17:00:05 UTC"):
        assert shown in job
    assert parse_env("PGUSER={{username}}\n\nDSN=postgresql://{{username}}:{{password}}@db/app\n") == {
        "PGUSER": "{{username}}", "DSN": "postgresql://{{username}}:{{password}}@db/app"}
