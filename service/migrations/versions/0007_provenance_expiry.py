"""Per-job provenance and expiry (issue 16, items 2 and 4):
- execution_env_vars.kv_version: the KV v2 version of the value the job received (null for executions
  recorded before, or that never started); execution_env_vars.used_at: when the job started with it
  (filled from executions.started_at for earlier ones), indexed with env_var_id for an env var's "last
  used";
- env_vars.expires_at: optional; an execution selecting an env var past it fails before the job starts.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("execution_env_vars") as t:
        t.add_column(sa.Column("kv_version", sa.Integer, nullable=True))
        t.add_column(sa.Column("used_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE execution_env_vars SET used_at = (SELECT started_at FROM executions "
               "WHERE executions.id = execution_env_vars.execution_id)")
    op.create_index("ix_execution_env_vars_last_use", "execution_env_vars", ["env_var_id", "used_at", "execution_id"])
    with op.batch_alter_table("env_vars") as t:
        t.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_env_vars_expires_at", "env_vars", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_env_vars_expires_at", "env_vars")
    with op.batch_alter_table("env_vars") as t:
        t.drop_column("expires_at")
    op.drop_index("ix_execution_env_vars_last_use", "execution_env_vars")
    with op.batch_alter_table("execution_env_vars") as t:
        t.drop_column("used_at")
        t.drop_column("kv_version")
