"""users: the first spelling of each case-folded user id owns it (see service/identity.py); existing
owners are registered, oldest first.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    users = op.create_table(
        "users",
        sa.Column("folded", sa.String(128), primary_key=True),
        sa.Column("sub", sa.String(128), nullable=False, unique=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    )
    # Typed columns, so SQLite hands back datetimes (its raw text would not fit a DateTime column).
    tables = [sa.table(t, sa.column("owner", sa.String), sa.column("created_at", sa.DateTime(timezone=True)))
              for t in ("env_vars", "executions")]
    owners = sa.union_all(*(sa.select(t.c.owner, t.c.created_at) for t in tables)).subquery()
    rows = op.get_bind().execute(sa.select(owners.c.owner, sa.func.min(owners.c.created_at).label("first"))
                                 .group_by(owners.c.owner).order_by("first")).all()
    seen: dict[str, dict] = {}
    for owner, first in rows:
        seen.setdefault(owner.lower(), {"folded": owner.lower(), "sub": owner, "first_seen": first})
    if seen:
        op.bulk_insert(users, list(seen.values()))


def downgrade() -> None:
    op.drop_table("users")
