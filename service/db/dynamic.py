"""Tables of dynamic env vars (migration 0009): declarations and, per execution, the credentials its job
was given: role, lease id, the job token's accessor, issue and revoke times. Never a value."""
import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, new_id, now


class DynamicEnvVar(Base):
    __tablename__ = "dynamic_env_vars"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_dynamic_env_vars_owner_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(1024), default="")
    engine: Mapped[str] = mapped_column(String(32), default="database")
    role: Mapped[str] = mapped_column(String(64))
    env: Mapped[dict] = mapped_column(JSON)  # env var name -> template of credential fields
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)


class ExecutionCredential(Base):
    __tablename__ = "execution_credentials"
    __table_args__ = (Index("ix_execution_credentials_outstanding", "revoked_at", "issued_at"),)

    execution_id: Mapped[str] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True)
    dynamic_env_var_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))  # the dynamic env var's name when the job was asked for
    role: Mapped[str] = mapped_column(String(64))
    env_names: Mapped[list] = mapped_column(JSON)  # the env vars the job was given from it
    lease_id: Mapped[str | None] = mapped_column(String(512), nullable=True, default=None)
    token_accessor: Mapped[str | None] = mapped_column(String(128), nullable=True, default=None)
    ttl_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)
    issued_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoke_error: Mapped[str] = mapped_column(String(256), default="")
