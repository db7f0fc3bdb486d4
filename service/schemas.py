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


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ValueError("must be a POSIX name: a letter or _, then letters, digits or _")
    if len(name) > MAX_NAME:
        raise ValueError(f"must be at most {MAX_NAME} characters")
    if name.upper() in RESERVED_NAMES or name.upper().startswith(RESERVED_PREFIXES):
        raise ValueError("is reserved (it would change how the job runs); choose another name")
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


class _Times(BaseModel):
    @field_validator("created_at", "updated_at", "started_at", "finished_at", "expires_at", "last_used_at",
                     mode="after", check_fields=False)
    @classmethod
    def _zone(cls, v):
        return as_utc(v)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnvVarCreate(_Strict):
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


class EnvVarUpdate(_Strict):
    description: Optional[str] = Field(default=None, max_length=MAX_DESCRIPTION)
    value: Optional[str] = Field(default=None, repr=False)
    # Absent: unchanged; null: cleared (model_fields_set tells the two apart).
    expires_at: Optional[AwareDatetime] = Field(
        default=None, description="ISO 8601 with a time zone, in the future; null clears it")

    @field_validator("expires_at")
    @classmethod
    def _expires(cls, v: Optional[datetime.datetime]) -> Optional[datetime.datetime]:
        return future_utc(v)


class EnvVarOut(_Times):
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


class ExecutionCreate(_Strict):
    command: list[str] = Field(min_length=1, max_length=64)
    env_var_ids: list[str] = Field(default_factory=list, max_length=100)
    timeout_seconds: Optional[int] = Field(default=None, ge=1)

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str]) -> list[str]:
        if any(len(a) > 4096 or "\x00" in a for a in v) or not v[0]:
            raise ValueError("arguments must be non-empty, at most 4096 characters, without NUL")
        return v

    @field_validator("env_var_ids")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("must not repeat an id")
        return v


ExecutionStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]


class ExecutionSummary(_Times):
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


class ExecutionOut(ExecutionSummary):
    output: str  # redacted
    # Env vars whose value is too short (under 4 characters) to be searched for in the output.
    unredacted_env_vars: list[str] = []
    env_vars: list[ExecutionEnvVarOut] = []  # by name


class ExecutionRerun(_Strict):
    versions: Literal["same", "latest"] = Field(
        default="latest", description="same: exactly the KV versions the execution received; latest: the newest")


class ExecutionList(BaseModel):
    items: list[ExecutionSummary]  # without their output: GET /api/v2/execution/{id} has it
    total: int
