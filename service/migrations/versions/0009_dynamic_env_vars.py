"""Dynamic env vars (issue 37): credentials minted from a Vault secrets engine role at job start.
- dynamic_env_vars: a user's declaration: the role, and which credential field lands in which env var
  name (templates such as "{{password}}" or a DSN); never a value.
- execution_credentials: per execution and dynamic env var, the role, the lease id and the accessor of
  the job's own token, when it was issued and revoked (or why revoking failed); never a value. The reaper
  revokes the leases of executions that ended without it.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dynamic_env_vars",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False, index=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False, server_default=""),
        sa.Column("engine", sa.String(32), nullable=False, server_default="database"),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("env", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("owner", "name", name="uq_dynamic_env_vars_owner_name"),
    )
    op.create_table(
        "execution_credentials",
        sa.Column("execution_id", sa.String(36), sa.ForeignKey("executions.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("dynamic_env_var_id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("env_names", sa.JSON, nullable=False),
        sa.Column("lease_id", sa.String(512), nullable=True),
        sa.Column("token_accessor", sa.String(128), nullable=True),
        sa.Column("ttl_seconds", sa.Integer, nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_error", sa.String(256), nullable=False, server_default=""),
    )
    # The reaper's and the metrics' question: leases issued and not revoked.
    op.create_index("ix_execution_credentials_outstanding", "execution_credentials", ["revoked_at", "issued_at"])


def downgrade() -> None:
    op.drop_index("ix_execution_credentials_outstanding", "execution_credentials")
    op.drop_table("execution_credentials")
    op.drop_table("dynamic_env_vars")
