"""Alembic environment: the service's models, the URL given by service.db.migrate.

Every replica runs the migrations at start. On PostgreSQL they run under a transaction-level advisory lock:
one replica upgrades, the others wait for its commit, then find the schema at head and do nothing (no two
upgrades race, whatever the number of replicas). SQLite is one process's file: no lock needed."""
from alembic import context
from sqlalchemy import engine_from_config, pool, text

from service.db import Base

# pg_advisory_xact_lock's key: any constant the service uses for nothing else ("envvars" as a number).
MIGRATION_LOCK = 0x656E7676617273

config = context.config
connectable = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                 poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Taken before Alembic reads the current revision, released at the upgrade's commit.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()
