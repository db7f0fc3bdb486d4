"""The dev stack's own database for dynamic env vars (stacks/dev_database.py), with Pulumi mocks."""
import pytest

from stacks import deploy
from stacks.config import ConfigError
from tests.unit.helpers import run

pytestmark = pytest.mark.unit


def test_dev_stack_runs_postgres_and_grants_readonly_to_alice_by_her_subject(mocks):
    run(lambda: deploy("dev"))
    (server,) = [r for r in mocks.of_type("docker:Container") if r.name == "postgres-server"]
    env = server.inputs["env"]
    assert env["POSTGRES_USER_CREATEROLE"] == "yes" and env["POSTGRES_USER"] == "vaultadmin"
    assert server.inputs["ports"] == [] and server.inputs["read_only"] is True and server.inputs["user"] == "999:999"
    assert server.inputs["networks"][0]["aliases"] == ["postgres"]
    password = mocks.named("postgres-admin-password")
    assert "x" * 24 not in str(env)  # the password reaches the server as a file only
    config = mocks.named("vault-database-config-dev").inputs["data"]
    assert config["connection_url"] == "postgresql://{{username}}:{{password}}@postgres:5432/app?sslmode=disable"
    assert (config["username"], config["password"], config["allowed_roles"]) == ("vaultadmin", "x" * 24, ["readonly"])
    assert password.inputs["length"] == 24
    role = mocks.named("vault-database-role-readonly").inputs["data"]
    assert role["db_name"] == "dev" and any("GRANT CONNECT ON DATABASE \"app\"" in s for s in role["creation_statements"])
    assert role["revocation_statements"][-1] == 'DROP ROLE IF EXISTS "{{name}}";'
    # The dev provider's `sub` is the demo user's entity id; the grant names that on the JWT mount.
    assert mocks.named("identity-alice-entity").inputs["alias"] == "alice"
    assert mocks.named("vault-database-user-demo-alice").inputs["alias"] == "entity-alice"
    assert mocks.named("vault-database-group-readonly").inputs["data"]["member_entity_ids"] == ["entity-entity-alice"]
    assert not [r for r in mocks.resources if r.name == "vault-database-user-demo-bob"]


@pytest.mark.parametrize("mocks", [{"devDatabase": "false"}], indirect=True)
def test_dev_database_false_leaves_the_engine_out(mocks):
    outputs = {}
    run(lambda: outputs.update(deploy("dev")))
    assert "postgres_container" not in outputs
    assert not mocks.of_type("infra:PostgresDocker") and not mocks.of_type("infra:DatabaseSecrets")


@pytest.mark.parametrize("mocks", [{
    "databaseConnections": '[{"name": "app", "username": "admin", '
                           '"connectionUrl": "postgresql://{{username}}:{{password}}@db:5432/app"}]',
    "databaseRoles": '[{"name": "reader", "connection": "app", "users": ["carol"], '
                     '"creationStatements": ["CREATE ROLE \\"{{name}}\\";"], "revocationStatements": ["DROP ROLE x;"]}]',
}], indirect=True)
def test_the_stacks_own_database_settings_are_kept_beside_the_dev_database(mocks):
    run(lambda: deploy("dev"))
    assert mocks.named("vault-database-config-app").inputs["data"]["allowed_roles"] == ["reader"]
    assert mocks.named("vault-database-config-dev").inputs["data"]["allowed_roles"] == ["readonly"]
    assert mocks.named("vault-database-group-reader").inputs["data"]["member_entity_ids"] == ["entity-carol"]


@pytest.mark.parametrize("mocks", [{
    "databaseConnections": '[{"name": "dev", "username": "admin", '
                           '"connectionUrl": "postgresql://{{username}}:{{password}}@db:5432/app"}]',
}], indirect=True)
def test_a_stack_setting_naming_the_dev_connection_is_refused_naming_the_setting(mocks):
    with pytest.raises(ConfigError, match="vault-envvars:devDatabase"):
        run(lambda: deploy("dev"))
