"""executions.claimed_by, lease_until and cancel_requested: an execution is owned by the replica that
claimed it for as long as that replica renews its lease, and a cancel is a state every replica sees.
Indexes for claiming the oldest queued execution and for listing an owner's executions, newest first.

Executions still queued or running under the earlier version belong to no replica (they lived in a
process's memory): they are failed, saying so, as that version's own start did. None is run twice.

Revision ID: 0004
Revises: 0003
"""
import datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as t:  # batch: SQLite cannot alter every kind of column in place
        t.add_column(sa.Column("claimed_by", sa.String(64), nullable=True))
        t.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        t.add_column(sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_executions_status_created", "executions", ["status", "created_at"])
    op.create_index("ix_executions_owner_created", "executions", ["owner", "created_at"])
    executions = sa.table("executions", sa.column("status", sa.String), sa.column("error", sa.Text),
                          sa.column("finished_at", sa.DateTime(timezone=True)))
    op.execute(executions.update().where(executions.c.status.in_(("queued", "running"))).values(
        status="failed", finished_at=datetime.datetime.now(datetime.timezone.utc),
        error="the service was upgraded while this execution was queued or running; it was not run to its end "
              "under the new version: start it again"))


def downgrade() -> None:
    op.drop_index("ix_executions_owner_created", "executions")
    op.drop_index("ix_executions_status_created", "executions")
    with op.batch_alter_table("executions") as t:
        t.drop_column("cancel_requested")
        t.drop_column("lease_until")
        t.drop_column("claimed_by")
