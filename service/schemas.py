"""Request and response bodies, with the validation rules users see as 422s naming the field."""
import datetime
import re
from typing import Literal, Optional

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Names that would change how the job runs rather than what it reads: refused.
RESERVED_NAMES = frozenset({
    "PATH", "HOME", "SHELL", "USER", "LOGNAME", "PWD", "OLDPWD", "IFS", "ENV", "BASH_ENV", "PS4", "TMPDIR",
    "LANG", "LC_ALL", "HOSTNAME", "TERM", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONINSPECT",
    "NODE_OPTIONS", "NODE_PATH", "PERL5LIB", "PERL5OPT", "RUBYLIB", "RUBYOPT", "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS", "GCONV_PATH", "GLIBC_TUNABLES",
})
RESERVED_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_", "VAULT_", "BAO_", "ENVVARS_")
MAX_NAME, MAX_DESCRIPTION = 128, 1024


RESERVED_MESSAGE = "is reserved (it would change how the job runs); choose another name"


def reserved(name: str) -> bool:
    return name.upper() in RESERVED_NAMES or name.upper().startswith(RESERVED_PREFIXES)


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ValueError("must be a POSIX name: a letter or _, then letters, digits or _")
    if len(name) > MAX_NAME:
        raise ValueError(f"must be at most {MAX_NAME} characters")
    if reserved(name):
        raise ValueError(RESERVED_MESSAGE)
    return name


def as_utc(value: Optional[datetime.datetime]) -> Optional[datetime.datetime]:
    """Timestamps are stored in UTC; SQLite hands them back without a zone."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value


def iso_utc(value: datetime.datetime) -> str:
    """A stored timestamp as these models encode it in JSON: 2026-12-04T19:25:50.123456Z."""
    if value.tzinfo is not None:  # PostgreSQL's; SQLite's are naive UTC
        value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value.isoformat() + "Z"  # isoformat, not strftime: 4x faster over a page


def sqlite_iso_utc(stored: str) -> str:
    """A timestamp as SQLAlchemy stores it in SQLite ('2026-12-04 19:25:50.123456', UTC), encoded exactly as
    iso_utc encodes the datetime it stands for, without building that datetime."""
    text = stored.replace(" ", "T", 1)
    return (text[:-7] if text.endswith(".000000") else text) + "Z"  # isoformat leaves out zero microseconds


def future_utc(value: Optional[datetime.datetime]) -> Optional[datetime.datetime]:
    """An expiry as given (ISO 8601 with a zone), in UTC: SQLite would store another zone's wall time."""
    if value is None:
        return None
    try:
        value = value.astimezone(datetime.timezone.utc)
    except OverflowError:  # year 9999 at -14:00 is past the last representable time
        raise ValueError("is out of range") from None
    if value <= datetime.datetime.now(datetime.timezone.utc):
        raise ValueError("must be in the future")
    return value


class UtcTimes(BaseModel):
    """A response whose times are told in UTC (leak_schemas.py shares it)."""

    @field_validator("created_at", "updated_at", "started_at", "finished_at", "expires_at", "last_used_at",
                     mode="after", check_fields=False)
    @classmethod
    def _zone(cls, v):
        return as_utc(v)


class StrictBody(BaseModel):
    """A request body that refuses fields it does not know (leak_schemas.py shares it)."""

    model_config = ConfigDict(extra="forbid")


class EnvVarCreate(StrictBody):
    name: str = Field(min_length=1)
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    value: str = Field(repr=False)
    expires_at: Optional[AwareDatetime] = Field(
        default=None, description="ISO 8601 with a time zone, in the future; past it, jobs selecting it fail")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("expires_at")
    @classmethod
    def _expires(cls, v: Optional[datetime.datetime]) -> Optional[datetime.datetime]:
        return future_utc(v)


class EnvVarUpdate(StrictBody):
    description: Optional[str] = Field(default=None, max_length=MAX_DESCRIPTION)
    value: Optional[str] = Field(default=None, repr=False)
    # Absent: unchanged; null: cleared (model_fields_set tells the two apart).
    expires_at: Optional[AwareDatetime] = Field(
        default=None, description="ISO 8601 with a time zone, in the future; null clears it")

    @field_validator("expires_at")
    @classmethod
    def _expires(cls, v: Optional[datetime.datetime]) -> Optional[datetime.datetime]:
        return future_utc(v)


class EnvVarOut(UtcTimes):
    id: str
    name: str
    description: str
    created_at: datetime.datetime
    updated_at: datetime.datetime
    expires_at: Optional[datetime.datetime] = None
    # The newest execution that started with it (its values were injected), and when it started.
    last_used_at: Optional[datetime.datetime] = None
    last_used_execution_id: Optional[str] = None


class EnvVarList(BaseModel):
    items: list[EnvVarOut]
    total: int


class EnvVarVersion(BaseModel):
    """One kept KV version of an env var's value: when and by whom it was written; never the value."""
    version: int
    created_at: datetime.datetime
    current: bool
    deleted: bool = Field(description="soft-deleted in Vault: its value cannot be read")
    destroyed: bool = Field(description="destroyed in Vault: its value is gone for good")
    author: Optional[Literal["user", "service"]] = Field(
        description="user: written by a request of `user`; service: written back by the service undoing "
                    "that user's failed change; null: not recorded (written outside the service)")
    user: Optional[str]
    action: Optional[Literal["create", "update", "rollback", "restore"]]
    rolled_back_from: Optional[int] = Field(default=None, description="the version a rollback copied")
    restorable: bool = Field(description="an older version whose value can be made current by a rollback")

    @field_validator("created_at", mode="after")
    @classmethod
    def _zone(cls, v):
        return as_utc(v)


class EnvVarVersions(BaseModel):
    env_var_id: str
    current_version: Optional[int]  # null: no value in Vault (see `python -m service check`)
    oldest_version: Optional[int] = Field(
        description="versions below it were pruned: Vault keeps the newest kvMaxVersions of each value")
    items: list[EnvVarVersion]  # newest first


class EnvVarRollback(StrictBody):
    version: int = Field(ge=1, le=2**31 - 1, strict=True,
                         description="the kept version whose value becomes the newest version")


class EnvVarRolledBack(BaseModel):
    env_var: EnvVarOut
    version: int  # the new current version, holding the value of rolled_back_from
    rolled_back_from: int


class ExecutionCreate(StrictBody):
    command: list[str] = Field(min_length=1, max_length=64)
    env_var_ids: list[str] = Field(default_factory=list, max_length=100)
    timeout_seconds: Optional[int] = Field(default=None, ge=1)
    # Dynamic env vars (service/core/dynamic_env_vars.py): credentials minted for this job only.
    dynamic_env_var_ids: list[str] = Field(default_factory=list, max_length=10)

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str]) -> list[str]:
        if any(len(a) > 4096 or "\x00" in a for a in v) or not v[0]:
            raise ValueError("arguments must be non-empty, at most 4096 characters, without NUL")
        return v

    @field_validator("env_var_ids", "dynamic_env_var_ids")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("must not repeat an id")
        return v


ExecutionStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]


class ExecutionSummary(UtcTimes):
    id: str
    status: str  # one of ExecutionStatus
    command: list[str]
    env_var_names: list[str]
    exit_code: Optional[int]
    error: str
    created_at: datetime.datetime
    started_at: Optional[datetime.datetime]
    finished_at: Optional[datetime.datetime]


class ExecutionEnvVarOut(BaseModel):
    id: str
    name: str  # as it was when the execution was created
    # The KV version of the value the job received; null until the job starts, for a job that never
    # started, and for executions recorded before versions were. A rerun of the same versions has its
    # versions from creation on.
    kv_version: Optional[int]


class ExecutionCredentialOut(UtcTimes):
    """A dynamic env var's credential as the job got it: provenance only, never a value."""
    dynamic_env_var_id: str
    name: str
    role: str
    env_names: list[str]
    lease_id: Optional[str]  # null until minted (and for a job that never started)
    token_accessor: Optional[str]  # the job's own Vault token, which minted it
    ttl_seconds: Optional[int]
    issued_at: Optional[datetime.datetime]
    revoked_at: Optional[datetime.datetime]
    revoke_error: str = ""


class ExecutionOut(ExecutionSummary):
    output: str  # redacted
    # Env vars whose value is too short (under 4 characters) to be searched for in the output.
    unredacted_env_vars: list[str] = []
    env_vars: list[ExecutionEnvVarOut] = []  # by name
    credentials: list[ExecutionCredentialOut] = []  # dynamic env vars, by name


class ExecutionRerun(StrictBody):
    versions: Literal["same", "latest"] = Field(
        default="latest", description="same: exactly the KV versions the execution received; latest: the newest")
    allow_compromised: bool = Field(
        default=False, description="same versions only: run even with a version a leak exposed (else 409)")


class ExecutionList(BaseModel):
    items: list[ExecutionSummary]  # without their output: GET /api/v2/execution/{id} has it
    total: int


# --- .env import (service/core/env_import.py) --------------------------------------------------------

ImportDecision = Literal["skip", "overwrite"]
ImportStatus = Literal["new", "existing", "invalid", "reserved", "duplicate"]


class EnvImportRequest(StrictBody):
    text: str = Field(repr=False, description="The .env file's text (UTF-8), parsed like python-dotenv does, "
                                              "without `${VAR}` expansion")
    decisions: dict[str, ImportDecision] = Field(
        default_factory=dict, description="What to do with each name you already have: skip or overwrite "
                                          "(required for every such name when applying)")


class ImportEntry(BaseModel):
    line: int = Field(description="The line the entry starts on (1-based)")
    name: Optional[str] = Field(description="None for a line that is not NAME=value")
    status: ImportStatus
    reason: str = Field(default="", description="Why an invalid, reserved or duplicate entry is refused")
    env_var_id: Optional[str] = Field(default=None, description="An existing name's env var")
    decision: Optional[ImportDecision] = Field(default=None, description="The decision given for an existing name")


class ImportPreview(BaseModel):
    entries: list[ImportEntry]  # never a value
    ready: bool = Field(description="Whether applying this text with these decisions would be accepted")
    problems: list[str] = Field(description="What stops it being ready: refused entries, undecided names")


class ImportedEntry(BaseModel):
    line: int
    name: str
    env_var_id: Optional[str]  # None for a skipped new name
    action: Literal["created", "overwritten", "skipped"]


class ImportResult(BaseModel):
    entries: list[ImportedEntry]
    created: int
    overwritten: int
    skipped: int


# --- activity (service/core/activity.py) -----------------------------------------------------------

class ActivityEnvVar(BaseModel):
    id: str
    name: Optional[str] = Field(description="Its name now, or when it was created if it no longer exists")
    exists: bool


class ActivityEvent(BaseModel):
    id: int
    at: datetime.datetime
    action: str = Field(description="env_var.create, env_var.update, env_var.delete, env_var.import, "
                                    "execution.start, execution.run, execution.cancel, sign_in.dashboard, "
                                    "sign_in.vault, ...")
    outcome: str
    detail: str = Field(description="What else the audit row says (never a value)")
    env_var: Optional[ActivityEnvVar] = Field(description="The env var an env_var.* event is about")
    execution_id: Optional[str] = Field(description="The job an execution.* event is about")
    env_vars: list[ActivityEnvVar] = Field(description="The env vars that job was given")

    @field_validator("at", mode="after")
    @classmethod
    def _zone(cls, v):
        return as_utc(v)


class ActivityList(BaseModel):
    items: list[ActivityEvent]
    total: int


# --- dynamic env vars (service/core/dynamic_env_vars.py) -------------------------------------------------

DYNAMIC_FIELDS = ("username", "password")
_TEMPLATE_FIELD = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
_ROLE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class DynamicEnvVarCreate(StrictBody):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    role: str = Field(min_length=1, max_length=63, description="a role of the database secrets engine")
    env: dict[str, str] = Field(min_length=1, max_length=8, description=(
        "env var name -> template of the credential's fields: {{username}}, {{password}}, e.g. "
        "postgresql://{{username}}:{{password}}@db:5432/app"))
    description: str = Field(default="", max_length=MAX_DESCRIPTION)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if not _ROLE_RE.fullmatch(v):
            raise ValueError("must be a role name: lower-case letters, digits, - and _")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for name, template in v.items():
            try:
                check_name(name)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
            fields = _TEMPLATE_FIELD.findall(template)
            unknown = sorted(set(fields) - set(DYNAMIC_FIELDS))
            if not fields or unknown or len(template) > 1024:
                raise ValueError(f"{name}: the template must use {{{{username}}}} and/or {{{{password}}}} "
                                 f"(and nothing else in braces), at most 1024 characters")
        return v


class DynamicEnvVarOut(UtcTimes):
    id: str
    name: str
    engine: str
    role: str
    env: dict[str, str]  # templates, never values
    description: str
    created_at: datetime.datetime


class DynamicEnvVarList(BaseModel):
    items: list[DynamicEnvVarOut]
