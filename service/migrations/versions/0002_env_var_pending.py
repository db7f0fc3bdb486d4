"""env_vars.pending and pending_until: a per-row claim on the row's Vault value while a change is in flight.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("env_vars") as t:  # batch: SQLite cannot alter every kind of column in place
        t.add_column(sa.Column("pending", sa.String(48), nullable=True))
        t.add_column(sa.Column("pending_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("env_vars") as t:
        t.drop_column("pending_until")
        t.drop_column("pending")
