"""Leak detection (issue 38): findings (a keyed hash, the detector, the line, a masked excerpt; never the
secret), the users' allowlisted hashes, the hash of each env var version a job received, the versions a
finding exposed, executions.output_restricted; webhooks (their URLs), each delivery attempt's status, and
the expiries already told.

Revision ID: 0010
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leak_findings",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("execution_id", sa.String(36), sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("excerpt", sa.String(512), nullable=False),
        sa.Column("env_var_id", sa.String(36), nullable=True),
        sa.Column("kv_version", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dismissed_by", sa.String(128), nullable=True),
        sa.Column("dismissed_reason", sa.String(512), nullable=True),
        sa.Column("dismissed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_leak_findings_execution_id", "leak_findings", ["execution_id"])
    op.create_index("ix_leak_findings_owner_at", "leak_findings", ["owner", "created_at"])
    op.create_index("ix_leak_findings_env_var", "leak_findings", ["env_var_id", "kv_version"])
    op.create_table(
        "leak_allowlist",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("secret_hash", sa.String(64), primary_key=True),
        sa.Column("finding_id", sa.String(36), nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "env_var_fingerprints",
        sa.Column("env_var_id", sa.String(36), primary_key=True),
        sa.Column("kv_version", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_env_var_fingerprints_owner_hash", "env_var_fingerprints", ["owner", "secret_hash"])
    op.create_table(
        "compromised_versions",
        sa.Column("env_var_id", sa.String(36), primary_key=True),
        sa.Column("kv_version", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_compromised_versions_owner", "compromised_versions", ["owner"])
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhooks_owner", "webhooks", ["owner"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("webhook_id", sa.String(36), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("error", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhook_deliveries_webhook_at", "webhook_deliveries", ["webhook_id", "at"])
    op.create_table(
        "expiry_notices",
        sa.Column("env_var_id", sa.String(36), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("executions") as t:
        t.add_column(sa.Column("output_restricted", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("executions") as t:
        t.drop_column("output_restricted")
    op.drop_table("expiry_notices")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_table("compromised_versions")
    op.drop_table("env_var_fingerprints")
    op.drop_table("leak_allowlist")
    op.drop_table("leak_findings")
