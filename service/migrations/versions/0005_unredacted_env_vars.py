"""execution_env_vars.redacted: false for an env var whose value was too short to be searched for in the
job's output (service/executor/redaction.py), so the job can say so. Earlier executions: true.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("execution_env_vars") as t:
        t.add_column(sa.Column("redacted", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("execution_env_vars") as t:
        t.drop_column("redacted")
