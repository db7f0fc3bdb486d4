"""Leak findings in SQL (migration 0010): never a secret. A finding keeps a keyed hash of what was found
(service/leak_detector.py: fingerprint), the detector, the line and a masked excerpt; each env var
value the executor read keeps the same hash, so a finding names the owner's env var it matches; a version
exposed by a finding is "possibly" compromised until dismissed, "compromised" once rotated away. And the
webhooks that tell of them (service/webhooks.py): URLs and delivery statuses only."""
import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, new_id, now


class LeakFinding(Base):
    __tablename__ = "leak_findings"
    __table_args__ = (Index("ix_leak_findings_owner_at", "owner", "created_at"),
                      Index("ix_leak_findings_env_var", "env_var_id", "kv_version"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    execution_id: Mapped[str] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str] = mapped_column(String(128))
    detector: Mapped[str] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(64))
    line: Mapped[int] = mapped_column(Integer)
    excerpt: Mapped[str] = mapped_column(String(512))  # the masked output's line around the marker
    env_var_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # the owner's env var it matches
    kv_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, dismissed
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)
    dismissed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    dismissed_reason: Mapped[str | None] = mapped_column(String(512), nullable=True)
    dismissed_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class LeakAllowlist(Base):
    """Hashes a user dismissed as false positives: not reported for that user again."""
    __tablename__ = "leak_allowlist"

    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    finding_id: Mapped[str] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(512))
    at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)


class EnvVarFingerprint(Base):
    """The keyed hash of one version of an env var's value, recorded when a job first received it."""
    __tablename__ = "env_var_fingerprints"
    __table_args__ = (Index("ix_env_var_fingerprints_owner_hash", "owner", "secret_hash"),)

    env_var_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kv_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(64))


class CompromisedVersion(Base):
    """A version of an env var's value exposed by a finding: state "possibly" (a finding is open),
    "compromised" (its owner rotated it away, confirming it). A rerun of the same versions refuses it."""
    __tablename__ = "compromised_versions"

    env_var_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kv_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    state: Mapped[str] = mapped_column(String(16), default="possibly")
    since: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)


class Webhook(Base):
    """A user's webhook (service/webhooks.py): its URL only; its signing secret is derived, never stored."""
    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)


class WebhookDelivery(Base):
    """One attempt to deliver an event: its HTTP status or error. Never the body."""
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_webhook_at", "webhook_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(36))  # "stack": the stack's own
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    event: Mapped[str] = mapped_column(String(64))
    delivery_id: Mapped[str] = mapped_column(String(36))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(String(128), default="")
    at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)


class ExpiryNotice(Base):
    """An env var's coming expiry told to the webhooks once (per expiry date), whichever replica saw it first."""
    __tablename__ = "expiry_notices"

    env_var_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    expires_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)
