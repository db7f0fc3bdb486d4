"""audit_events indexed by actor and time: a user's activity page (newest first, paged) reads only their
own rows instead of scanning everyone's.

Revision ID: 0008
Revises: 0007
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_events_actor_at", "audit_events", ["actor", "at", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_actor_at", table_name="audit_events")
