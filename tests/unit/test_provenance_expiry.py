"""Expiry's validation and the provenance/expiry migration (0007), no server (issue 16, items 2 and 4)."""
import datetime

import pytest
from pydantic import ValidationError

from service.schemas import EnvVarCreate, EnvVarUpdate

pytestmark = pytest.mark.unit
UTC = datetime.timezone.utc


def _fields(e: ValidationError) -> set:
    return {loc for err in e.errors() for loc in err["loc"]}


@pytest.mark.parametrize("bad", ["2001-01-01T00:00:00Z", "2099-01-01T00:00:00", "soon", 12])
def test_an_expiry_must_be_a_future_time_with_a_zone(bad):
    with pytest.raises(ValidationError) as caught:
        EnvVarCreate(name="A", value="secret-value", expires_at=bad)
    assert _fields(caught.value) == {"expires_at"}
    assert "secret-value" not in str(caught.value)


def test_an_expiry_is_kept_in_utc_whatever_zone_it_was_given_in():
    body = EnvVarCreate(name="A", value="v", expires_at="2099-06-01T12:00:00+02:00")
    assert body.expires_at == datetime.datetime(2099, 6, 1, 10, 0, tzinfo=UTC)
    assert body.expires_at.utcoffset() == datetime.timedelta(0)


def test_an_update_tells_an_absent_expiry_from_a_null_one():
    assert "expires_at" not in EnvVarUpdate(description="d").model_fields_set
    cleared = EnvVarUpdate.model_validate({"expires_at": None})
    assert "expires_at" in cleared.model_fields_set and cleared.expires_at is None
    with pytest.raises(ValidationError) as caught:
        EnvVarUpdate(expires_at="2001-01-01T00:00:00+00:00")
    assert _fields(caught.value) == {"expires_at"}


def test_the_migration_keeps_earlier_executions_with_no_recorded_version(tmp_path):

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, inspect, text

    import service.db

    url = f"sqlite:///{tmp_path}/old.db"
    cfg = Config()
    cfg.set_main_option("script_location", service.db.MIGRATIONS)
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0005")
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("insert into env_vars (id, owner, name, description, created_at, updated_at) "
                       "values ('e', 'u', 'A', '', '2026-12-01 10:00:00', '2026-12-01 10:00:00')"))
        c.execute(text("insert into executions (id, owner, command, status, timeout_seconds, output, error, "
                       "created_at, started_at) values ('x', 'u', '[]', 'succeeded', 5, '', '', "
                       "'2026-12-01 10:00:00', '2026-12-01 10:00:05')"))
        c.execute(text("insert into execution_env_vars (execution_id, env_var_id, name) values ('x', 'e', 'A')"))
    command.upgrade(cfg, "head")
    with engine.connect() as c:
        # No version was recorded then; when it was used is known (its execution's start).
        assert tuple(c.execute(text("select kv_version, used_at from execution_env_vars")).one()) == (
            None, "2026-12-01 10:00:05")
        assert c.execute(text("select expires_at from env_vars")).scalar_one() is None
    indexes = {i["name"] for t in ("env_vars", "execution_env_vars") for i in inspect(engine).get_indexes(t)}
    assert {"ix_env_vars_expires_at", "ix_execution_env_vars_last_use"} <= indexes
    command.downgrade(cfg, "0005")
    assert "kv_version" not in {col["name"] for col in inspect(create_engine(url)).get_columns("execution_env_vars")}
