"""Metadata in SQL (never a value): env vars, executions, the env vars each execution used, and an
audit trail. SQLite by default, PostgreSQL in production; the schema is made by Alembic migrations.
The other tables are beside it (dynamic.py, leaks.py), and so is the audit trail's writing (audit.py)."""
import datetime
import os
import uuid
from typing import cast

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, create_engine, event
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


def kv_path(owner: str, env_var_id: str) -> str:
    """Where an env var's value lives under the KV v2 mount (the API path is <mount>/data/<this>): by ids,
    never by name, so a rename moves nothing. Migration 0006 fills older rows with the same expression."""
    return f"users/{owner}/{env_var_id}"


class Base(DeclarativeBase):
    pass


class EnvVar(Base):
    __tablename__ = "env_vars"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_env_vars_owner_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(1024), default="")
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)
    # kv_path(owner, id), stored with the row when it is inserted (see _store_vault_path below) so that an
    # operator reading the database knows where the value is, and `python -m service check` can tell a
    # row that points elsewhere.
    vault_path: Mapped[str] = mapped_column(String(256))
    # A change in flight on the row's Vault value, claimed by one request ("create:<uuid>", "update:<uuid>",
    # "delete:<uuid>") until pending_until: a logical claim instead of a database lock held across a Vault
    # call. The lease lets another request take over the claim of a request that died.
    pending: Mapped[str | None] = mapped_column(String(48), nullable=True, default=None)
    pending_until: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Past it, an execution selecting this env var fails before the job starts (migration 0007).
    expires_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True,
                                                                 index=True, default=None)

    @classmethod
    def visible(cls):
        """Rows that exist for their owner: a row still being created (its value maybe not in Vault yet,
        maybe never) is not one."""
        return cls.pending.is_(None) | ~cls.pending.startswith("create:")

    @property
    def being_created(self) -> bool:
        return (self.pending or "").startswith("create:")


@event.listens_for(EnvVar, "before_insert")
def _store_vault_path(_mapper, _connection, row: EnvVar) -> None:
    # Every way of inserting a row through the ORM stores the path, derived from the final id and owner.
    if row.id is None:
        row.id = new_id()
    row.vault_path = kv_path(row.owner, row.id)


class Execution(Base):
    __tablename__ = "executions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    command: Mapped[list] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output: Mapped[str] = mapped_column(Text, default="")  # redacted
    error: Mapped[str] = mapped_column(Text, default="")
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)
    started_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The replica that claimed it (service/executor/runner.py) owns it until lease_until, which it renews
    # while the job runs; a queued row whose lease ran out never started and is queued again.
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)
    lease_until: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # A secret was found in its output (service/core/leaks.py, migration 0010): only its owner may read it.
    output_restricted: Mapped[bool] = mapped_column(Boolean, default=False)


class ExecutionEnvVar(Base):
    __tablename__ = "execution_env_vars"
    # An env var's last use is one backward step in this index, however often it was used (migration 0007).
    __table_args__ = (Index("ix_execution_env_vars_last_use", "env_var_id", "used_at", "execution_id"),)

    execution_id: Mapped[str] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True)
    env_var_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))  # as it was when the execution started
    # False: its value was too short to be searched for in the output (service/executor/redaction.py).
    redacted: Mapped[bool] = mapped_column(Boolean, default=True)
    # The KV v2 version of the value the job received, recorded when it starts (migration 0007); set at
    # creation for a rerun of the same versions, which the executor then reads exactly.
    kv_version: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)
    # When the job started with the value (its execution's started_at); null while it has not.
    used_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, default=None)


class User(Base):
    """The first spelling of each case-folded user id (service/auth/identities.py)."""
    __tablename__ = "users"

    folded: Mapped[str] = mapped_column(String(128), primary_key=True)
    sub: Mapped[str] = mapped_column(String(128), unique=True)
    first_seen: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_actor_at", "actor", "at", "id"),)  # a user's activity, newest first

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(512), default="")  # never a value


MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")  # service/migrations

# Foreign keys; concurrent readers (WAL); and a commit that survives a crash of the service without an
# fsync of its own (synchronous=NORMAL: the WAL is synced at checkpoints). A power loss or kernel crash
# may lose the last commits; `python -m service check` then reports any value whose row was lost. An fsync
# per commit was a third of a create's time (bench/); production runs on PostgreSQL.
SQLITE_PRAGMAS = ("PRAGMA foreign_keys=ON", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


def embedded(bind: Engine | Connection) -> bool:
    """SQLite: a library in this process, not a server a call waits for."""
    return bind.dialect.name == "sqlite"


def make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        # A server may have closed an idle connection (a restart, a failover): checked before each use.
        return create_engine(url, pool_pre_ping=True, future=True)
    engine = create_engine(url, future=True)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(conn, _record):
        cur = conn.cursor()
        for pragma in SQLITE_PRAGMAS:
            cur.execute(pragma)
        cur.close()
    return engine


def migrate(url: str) -> None:
    """Brings the database to the newest schema (Alembic upgrade head)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


def matched(s: Session, statement) -> int:
    """Runs a conditional UPDATE or DELETE; how many rows it matched. Loaded objects are not synchronised:
    the operations answer from the values they wrote."""
    result = s.execute(statement, execution_options={"synchronize_session": False})
    return cast(CursorResult, result).rowcount  # an UPDATE or DELETE: a cursor's result
