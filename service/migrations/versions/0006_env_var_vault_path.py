"""env_vars.vault_path: where the row's value lives under the KV v2 mount, stored with the row (the
seed's schema) instead of only derived. Existing rows are filled with the path the service has always
used, users/<owner>/<id> (service/db.py kv_path): by ids, never by name.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("env_vars") as t:
        t.add_column(sa.Column("vault_path", sa.String(256), nullable=True))
    env_vars = sa.table("env_vars", sa.column("id", sa.String), sa.column("owner", sa.String),
                        sa.column("vault_path", sa.String))
    # `||` on SQLite and PostgreSQL alike: the same expression as kv_path, in SQL, one statement.
    op.execute(env_vars.update().values(
        vault_path=sa.literal("users/") + env_vars.c.owner + sa.literal("/") + env_vars.c.id))
    with op.batch_alter_table("env_vars") as t:  # batch: SQLite cannot make a column NOT NULL in place
        t.alter_column("vault_path", existing_type=sa.String(256), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("env_vars") as t:
        t.drop_column("vault_path")
