"""Service settings from the environment (ENVVARS_*), validated once at start (pydantic-settings).

Each field is read from ENVVARS_<FIELD>; a refused value is told as `ENVVARS_<NAME> = '<value>' <why>`, a
missing one as `ENVVARS_<NAME> is required`. Secrets come from files (ENVVARS_<NAME>_FILE: a mounted
Secret, a 0400 file), never from the process environment."""
import os
import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Mapping, Optional, get_args

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

PREFIX = "ENVVARS_"


class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class AtLeast:
    """A whole number (ASCII digits only) of at least `minimum`."""
    minimum: int = 1


@dataclass(frozen=True)
class Matches:
    """A text of this shape (empty allowed when `optional`)."""
    pattern: str
    said: str
    optional: bool = False


class NoTrailingSlash:
    """A URL whose trailing slashes are cut (before any Matches)."""


class TrueFalse:
    """`true` or `false`, in any letter case (no yes/no/1/0)."""


Whole = Annotated[int, AtLeast()]
Flag = Annotated[bool, TrueFalse()]
RATE = r"\d+/(second|minute|hour)"
HTTP_URL = r"https?://[^\s]+"
# Read from the file ENVVARS_<NAME>_FILE names: {NAME: whether ENVVARS_<NAME> may give it instead}.
FROM_FILES = {"DATABASE_URL": True, "APPROLE_ROLE_ID": True, "APPROLE_SECRET_ID": False,
              "OIDC_CLIENT_SECRET": False, "SESSION_KEY": False, "LEAK_HASH_KEY": False, "WEBHOOK_KEY": False,
              "STACK_WEBHOOK_SECRET": False, "VAULT_LOGIN_KEY": False}
# Variables not named after their field: {variable: field's name}.
RENAMED = {"VAULT_CACERT": "VAULT_CA_FILE", "OIDC_CACERT": "OIDC_CA_FILE"}
_GIVEN: ContextVar[Optional[Mapping[str, str]]] = ContextVar("envvars_settings_environment", default=None)


class _Environment(EnvSettingsSource):
    """The ENVVARS_* variables of the environment from_env was given (DOCKER_HOST for ENVVARS_DOCKER_HOST
    when unset), values from files read, renamed variables under their field's name."""

    def _load_env_vars(self) -> Mapping[str, Optional[str]]:
        given = _GIVEN.get() or {}
        ours = {k: v for k, v in given.items() if k.startswith(PREFIX) and k.removeprefix(PREFIX) not in RENAMED.values()}
        for variable, name in RENAMED.items():
            if PREFIX + variable in ours:
                ours[PREFIX + name] = ours.pop(PREFIX + variable)
        if "DOCKER_HOST" in given:
            ours.setdefault(f"{PREFIX}DOCKER_HOST", given["DOCKER_HOST"])
        for name, from_env_too in FROM_FILES.items():
            path = ours.pop(f"{PREFIX}{name}_FILE", "")
            if path:
                ours[PREFIX + name] = _read_file(path)
            elif not from_env_too:
                ours.pop(PREFIX + name, None)
        return parse_env_vars(ours, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def _read_file(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="ignore")

    vault_addr: Annotated[str, NoTrailingSlash()]
    oidc_issuer: str
    oidc_audience: str = "env-vars"
    oidc_jwks_url: str
    database_url: str = "sqlite:///./envvars.db"
    vault_ca_file: str = ""  # ENVVARS_VAULT_CACERT
    vault_timeout_seconds: Whole = 10  # per Vault request; the lease of a row's pending change follows it
    oidc_ca_file: str = ""  # ENVVARS_OIDC_CACERT
    kv_mount: str = "secret"
    jwt_mount: str = "jwt"
    jwt_role: str = "user"
    approle_mount: str = "approle"
    approle_role_id: str = ""
    approle_secret_id: str = Field(default="", repr=False)
    executor_backend: Literal["subprocess", "docker", "kubernetes"] = "subprocess"
    max_workers: Whole = 4
    # An execution's replica renews its lease while the job runs; one silent this long is taken as gone.
    execution_lease_seconds: Annotated[int, AtLeast(2)] = 15
    # At shutdown (SIGTERM), for running jobs to end before they are stopped (the pod's grace is longer).
    shutdown_grace_seconds: Annotated[int, AtLeast(0)] = 20
    # Jobs' sandbox (service/executor/sandbox.py): network, the first of the jobs' uids, limits.
    job_network: Literal["on", "none"] = "on"
    job_proc: Literal["private", "none"] = "private"  # "none": jobs get no /proc (a container whose /proc is masked)
    job_uid_base: Whole = 200_000
    job_memory_mb: Annotated[int, AtLeast(16)] = 1024
    job_max_processes: Whole = 128
    job_cpu_seconds: Whole = 600
    job_open_files: Annotated[int, AtLeast(16)] = 1024
    job_tmpfs_mb: Whole = 64
    job_max_output_bytes: Whole = 1 << 20
    # Jobs as the service's own user, able to read its credentials: a single-user laptop only.
    unsafe_unsandboxed_jobs: Flag = False
    default_timeout_seconds: Whole = 300
    max_timeout_seconds: Whole = 3600
    rate_limit: Annotated[str, Matches(RATE, "must look like 120/minute")] = "120/minute"
    # .env imports and their previews, per user, on top of rate_limit
    import_rate_limit: Annotated[str, Matches(RATE, "must look like 10/minute")] = "10/minute"
    value_max_bytes: Whole = 64 * 1024
    tls_cert_file: str = ""
    tls_key_file: str = ""
    docker_image: str = "localhost/vault-envvars/debian-python:bookworm-r2"
    docker_host: str = ""  # else DOCKER_HOST
    kubernetes_namespace: str = "env-vars-jobs"
    kubernetes_image: str = "python:3.12-slim"
    # The dashboard's OIDC login (authorization code + PKCE). The client id defaults to the audience.
    oidc_client_id: str = ""
    oidc_client_secret: str = Field(default="", repr=False)  # empty: a public client (PKCE only)
    # Where browsers are sent to log in, when it differs from the issuer's discovery document (the
    # issuer is reached by the service at an address browsers cannot use, as in the dev stack).
    oidc_authorization_url: str = ""
    oidc_scopes: str = "openid"
    # The dashboard's own URL as browsers see it (its OIDC redirect URI); empty: taken from each request.
    public_url: Annotated[str, NoTrailingSlash(), Matches(r"https?://[^/?#]+(/[^?#]*)?",
                                                          "must be an http(s) URL without query", optional=True)] = ""
    # Session cookies `Secure` whatever the URL (the prod compositions); off: `Secure` over https only.
    secure_cookies: Flag = False
    # Encrypts the dashboard's session cookies; empty: a random key per process (sessions end at restart).
    session_key: str = Field(default="", repr=False)
    # Dynamic env vars (service/executor/leases.py): the database engine's mount, the token role of the
    # jobs' own tokens, the grace added to a job's timeout for its lease, the reaper's period.
    database_mount: str = "database"
    job_token_role: str = "envvars-job"  # noqa: S105 (a role name)
    dynamic_lease_grace_seconds: Annotated[int, AtLeast(5)] = 30
    lease_reap_seconds: Whole = 30
    # Keys the hashes of leak findings and env var values (service/executor/leak_watch.py): with it, a copy of the
    # database cannot test guesses of a value. Empty: derived from the session key (service/components.py).
    leak_hash_key: str = Field(default="", repr=False)
    # Webhooks (service/webhooks.py): users' signing secrets are derived from this key (a file); empty: from
    # the session key; neither: users cannot add webhooks. The stack's own webhook: its URL and secret (a file).
    webhook_key: str = Field(default="", repr=False)
    stack_webhook_url: Annotated[str, Matches(HTTP_URL, "must be an http(s) URL", optional=True)] = ""
    stack_webhook_secret: str = Field(default="", repr=False)
    webhook_attempts: Whole = 5
    webhook_backoff_ms: Annotated[int, AtLeast(0)] = 1000  # before the 2nd attempt; doubled before each next one
    # env_var.expiring: told once when an expiry comes within so many days
    webhook_expiring_days: Annotated[int, AtLeast(0)] = 7
    webhook_expiry_check_seconds: Whole = 3600
    # The key the service signs users' Vault login tokens with (service/vault/login.py): Vault's user role
    # trusts no other, so no token of the identity provider alone logs in at Vault.
    vault_login_key: str = Field(default="", repr=False)
    vault_login_issuer: str = "vault-envvars-service"
    vault_login_audience: str = "vault-envvars:user-role"

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # from_env's environment, no .env file, no secrets directory; built directly: the values given alone.
        return (init_settings, _Environment(settings_cls)) if _GIVEN.get() is not None else (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _client_id_defaults_to_the_audience(cls, data: Any) -> Any:
        if isinstance(data, dict) and "oidc_client_id" not in data:
            data = {**data, "oidc_client_id": data.get("oidc_audience", cls.model_fields["oidc_audience"].default)}
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _as_annotated(cls, raw: Any, info: ValidationInfo) -> Any:
        """The checks the fields' annotations name (AtLeast, Matches, TrueFalse, NoTrailingSlash), on the text
        of the variable; what fails says so after `ENVVARS_<NAME>` (see from_env)."""
        if not isinstance(raw, str):
            return raw
        for rule in cls.model_fields[info.field_name or ""].metadata:
            if isinstance(rule, NoTrailingSlash):
                raw = raw.rstrip("/")
            elif isinstance(rule, Matches) and not (rule.optional and not raw) and not re.fullmatch(rule.pattern, raw):
                raise ValueError(f"= {raw!r} {rule.said}")
            elif isinstance(rule, AtLeast) and (not (raw.isascii() and raw.isdigit()) or int(raw) < rule.minimum):
                raise ValueError(f"= {raw!r} must be a whole number >= {rule.minimum}")
            elif isinstance(rule, TrueFalse):
                if raw.lower() not in ("true", "false"):
                    raise ValueError(f"= {raw.lower()!r}; allowed values: true, false")
                return raw.lower() == "true"
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.stack_webhook_url and not self.stack_webhook_secret:
            raise ValueError("ENVVARS_STACK_WEBHOOK_URL needs ENVVARS_STACK_WEBHOOK_SECRET_FILE (its signing secret)")
        if self.secure_cookies and self.public_url.startswith("http://"):
            raise ValueError(f"ENVVARS_PUBLIC_URL = {self.public_url!r} must be an https:// URL with "
                             "ENVVARS_SECURE_COOKIES=true (browsers send Secure cookies over https only)")
        return self

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None, serving: bool = True) -> "Settings":
        """The settings of `env` (default: the process's environment) alone. `serving`: False for `python -m
        service check`, which logs in as the executor only (no users' key)."""
        given = dict(os.environ if env is None else env)
        if serving and not given.get(f"{PREFIX}VAULT_LOGIN_KEY_FILE"):
            # The stack's service_login_key output, in a file: the one key Vault's user role trusts.
            raise SettingsError(f"{PREFIX}VAULT_LOGIN_KEY_FILE is required")
        token = _GIVEN.set(given)
        try:
            return cls()  # type: ignore[call-arg]  # the fields come from _Environment
        except ValidationError as e:
            raise SettingsError(_told(cls, e.errors()[0])) from None
        finally:
            _GIVEN.reset(token)


def _told(cls: type[Settings], error: Any) -> str:
    """A validation error in the operator's words: the variable's name, then what is wrong with its value."""
    loc = [str(p) for p in error.get("loc", ())]
    name = loc[0].upper() if loc else ""
    name = name if not name or name.startswith(PREFIX) else PREFIX + name
    if error["type"] == "missing":
        return f"{name} is required"
    if error["type"] == "literal_error":
        allowed = get_args(cls.model_fields[loc[0]].annotation)
        return f"{name} = {error['input']!r}; allowed values: {', '.join(allowed)}"
    said = str(error["msg"]).removeprefix("Value error, ")
    return f"{name} {said}" if name else said
