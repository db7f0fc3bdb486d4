"""Service settings from the environment (ENVVARS_*), validated once at start."""
import os
import re
from dataclasses import dataclass, field
from typing import Optional

BACKENDS = ("subprocess", "docker", "kubernetes")
NETWORKS = ("on", "none")
PROCS = ("private", "none")


class SettingsError(Exception):
    pass


def _read_file(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@dataclass(frozen=True)
class Settings:
    vault_addr: str
    oidc_issuer: str
    oidc_audience: str
    oidc_jwks_url: str
    database_url: str = "sqlite:///./envvars.db"
    vault_ca_file: str = ""
    vault_timeout_seconds: int = 10  # per Vault request; the lease of a row's pending change follows it
    oidc_ca_file: str = ""
    kv_mount: str = "secret"
    jwt_mount: str = "jwt"
    jwt_role: str = "user"
    approle_mount: str = "approle"
    approle_role_id: str = ""
    approle_secret_id: str = field(default="", repr=False)
    executor_backend: str = "subprocess"
    max_workers: int = 4
    # An execution's replica renews its lease while the job runs; one silent this long is taken as gone.
    execution_lease_seconds: int = 15
    # At shutdown (SIGTERM), for running jobs to end before they are stopped (the pod's grace is longer).
    shutdown_grace_seconds: int = 20
    # Jobs' sandbox (service/executor/sandbox.py): network, the first of the jobs' uids, limits.
    job_network: str = "on"
    job_proc: str = "private"  # "none": jobs get no /proc (a container whose /proc is masked)
    job_uid_base: int = 200_000
    job_memory_mb: int = 1024
    job_max_processes: int = 128
    job_cpu_seconds: int = 600
    job_open_files: int = 1024
    job_tmpfs_mb: int = 64
    job_max_output_bytes: int = 1 << 20
    # Jobs as the service's own user, able to read its credentials: a single-user laptop only.
    unsafe_unsandboxed_jobs: bool = False
    default_timeout_seconds: int = 300
    max_timeout_seconds: int = 3600
    rate_limit: str = "120/minute"
    import_rate_limit: str = "10/minute"  # .env imports and their previews, per user, on top of rate_limit
    value_max_bytes: int = 64 * 1024
    tls_cert_file: str = ""
    tls_key_file: str = ""
    docker_image: str = "localhost/vault-envvars/debian-python:bookworm-r2"
    docker_host: str = ""
    kubernetes_namespace: str = "env-vars-jobs"
    kubernetes_image: str = "python:3.12-slim"
    # The dashboard's OIDC login (authorization code + PKCE). The client id defaults to the audience.
    oidc_client_id: str = ""
    oidc_client_secret: str = field(default="", repr=False)  # empty: a public client (PKCE only)
    # Where browsers are sent to log in, when it differs from the issuer's discovery document (the
    # issuer is reached by the service at an address browsers cannot use, as in the dev stack).
    oidc_authorization_url: str = ""
    oidc_scopes: str = "openid"
    # The dashboard's own URL as browsers see it (its OIDC redirect URI); empty: taken from each request.
    public_url: str = ""
    # Session cookies `Secure` whatever the URL (the prod compositions); off: `Secure` over https only.
    secure_cookies: bool = False
    # Encrypts the dashboard's session cookies; empty: a random key per process (sessions end at restart).
    session_key: str = field(default="", repr=False)
    # Dynamic env vars (service/executor/leases.py): the database engine's mount, the token role of the
    # jobs' own tokens, the grace added to a job's timeout for its lease, the reaper's period.
    database_mount: str = "database"
    job_token_role: str = "envvars-job"  # noqa: S105 (a role name)
    dynamic_lease_grace_seconds: int = 30
    lease_reap_seconds: int = 30
    # Keys the hashes of leak findings and env var values (service/core/leaks.py): with it, a copy of the
    # database cannot test guesses of a value. Empty: derived from the session key (service/components.py).
    leak_hash_key: str = field(default="", repr=False)
    # Webhooks (service/webhooks.py): users' signing secrets are derived from this key (a file); empty: from
    # the session key; neither: users cannot add webhooks. The stack's own webhook: its URL and secret (a file).
    webhook_key: str = field(default="", repr=False)
    stack_webhook_url: str = ""
    stack_webhook_secret: str = field(default="", repr=False)
    webhook_attempts: int = 5
    webhook_backoff_ms: int = 1000  # before the 2nd attempt; doubled before each next one
    webhook_expiring_days: int = 7  # env_var.expiring: told once when an expiry comes within so many days
    webhook_expiry_check_seconds: int = 3600
    # The key the service signs users' Vault login tokens with (service/vault/login.py): Vault's user role
    # trusts no other, so no token of the identity provider alone logs in at Vault.
    vault_login_key: str = field(default="", repr=False)
    vault_login_issuer: str = "vault-envvars-service"
    vault_login_audience: str = "vault-envvars:user-role"

    @classmethod
    def from_env(cls, env: Optional[dict] = None, serving: bool = True) -> "Settings":
        """`serving`: False for `python -m service check`, which logs in as the executor only (no users' key)."""
        e = dict(os.environ if env is None else env)

        def get(name: str, default: Optional[str] = None) -> str:
            value = e.get(f"ENVVARS_{name}", default)
            if value is None:
                raise SettingsError(f"ENVVARS_{name} is required")
            return value

        def integer(name: str, default: int, minimum: int = 1) -> int:
            raw = get(name, str(default))
            if not (raw.isascii() and raw.isdigit()) or int(raw) < minimum:
                raise SettingsError(f"ENVVARS_{name} = {raw!r} must be a whole number >= {minimum}")
            return int(raw)

        backend = get("EXECUTOR_BACKEND", "subprocess")
        if backend not in BACKENDS:
            raise SettingsError(f"ENVVARS_EXECUTOR_BACKEND = {backend!r}; allowed values: {', '.join(BACKENDS)}")
        network = get("JOB_NETWORK", "on")
        if network not in NETWORKS:
            raise SettingsError(f"ENVVARS_JOB_NETWORK = {network!r}; allowed values: {', '.join(NETWORKS)}")
        proc = get("JOB_PROC", "private")
        if proc not in PROCS:
            raise SettingsError(f"ENVVARS_JOB_PROC = {proc!r}; allowed values: {', '.join(PROCS)}")
        unsafe = get("UNSAFE_UNSANDBOXED_JOBS", "false").lower()
        if unsafe not in ("true", "false"):
            raise SettingsError(f"ENVVARS_UNSAFE_UNSANDBOXED_JOBS = {unsafe!r}; allowed values: true, false")
        rate = get("RATE_LIMIT", "120/minute")
        if not re.fullmatch(r"\d+/(second|minute|hour)", rate):
            raise SettingsError(f"ENVVARS_RATE_LIMIT = {rate!r} must look like 120/minute")
        import_rate = get("IMPORT_RATE_LIMIT", "10/minute")
        if not re.fullmatch(r"\d+/(second|minute|hour)", import_rate):
            raise SettingsError(f"ENVVARS_IMPORT_RATE_LIMIT = {import_rate!r} must look like 10/minute")
        # Secrets come from files (a mounted Secret, a 0400 file), never from the process environment.
        database_url_file = get("DATABASE_URL_FILE", "")  # a URL with a password: from a file
        secret_id_file = get("APPROLE_SECRET_ID_FILE", "")
        role_id_file = get("APPROLE_ROLE_ID_FILE", "")
        client_secret_file = get("OIDC_CLIENT_SECRET_FILE", "")
        session_key_file = get("SESSION_KEY_FILE", "")
        leak_hash_key_file = get("LEAK_HASH_KEY_FILE", "")
        webhook_key_file = get("WEBHOOK_KEY_FILE", "")
        stack_webhook_secret_file = get("STACK_WEBHOOK_SECRET_FILE", "")
        stack_webhook_url = get("STACK_WEBHOOK_URL", "")
        if stack_webhook_url and not re.fullmatch(r"https?://[^\s]+", stack_webhook_url):
            raise SettingsError(f"ENVVARS_STACK_WEBHOOK_URL = {stack_webhook_url!r} must be an http(s) URL")
        if stack_webhook_url and not stack_webhook_secret_file:
            raise SettingsError("ENVVARS_STACK_WEBHOOK_URL needs ENVVARS_STACK_WEBHOOK_SECRET_FILE (its signing secret)")
        # The stack's service_login_key output, in a file: the one key Vault's user role trusts.
        login_key_file = get("VAULT_LOGIN_KEY_FILE", "")
        if serving and not login_key_file:
            raise SettingsError("ENVVARS_VAULT_LOGIN_KEY_FILE is required")
        public_url = get("PUBLIC_URL", "").rstrip("/")
        if public_url and not re.fullmatch(r"https?://[^/?#]+(/[^?#]*)?", public_url):
            raise SettingsError(f"ENVVARS_PUBLIC_URL = {public_url!r} must be an http(s) URL without query")
        secure_cookies = get("SECURE_COOKIES", "false").lower()
        if secure_cookies not in ("true", "false"):
            raise SettingsError(f"ENVVARS_SECURE_COOKIES = {secure_cookies!r}; allowed values: true, false")
        if secure_cookies == "true" and public_url.startswith("http://"):
            raise SettingsError(f"ENVVARS_PUBLIC_URL = {public_url!r} must be an https:// URL with "
                                "ENVVARS_SECURE_COOKIES=true (browsers send Secure cookies over https only)")
        audience = get("OIDC_AUDIENCE", "env-vars")
        return cls(
            vault_addr=get("VAULT_ADDR").rstrip("/"),
            vault_ca_file=get("VAULT_CACERT", ""),
            vault_timeout_seconds=integer("VAULT_TIMEOUT_SECONDS", 10),
            oidc_issuer=get("OIDC_ISSUER"),
            oidc_audience=audience,
            oidc_jwks_url=get("OIDC_JWKS_URL"),
            oidc_ca_file=get("OIDC_CACERT", ""),
            database_url=_read_file(database_url_file) if database_url_file else get("DATABASE_URL",
                                                                                     "sqlite:///./envvars.db"),
            kv_mount=get("KV_MOUNT", "secret"),
            jwt_mount=get("JWT_MOUNT", "jwt"),
            jwt_role=get("JWT_ROLE", "user"),
            approle_mount=get("APPROLE_MOUNT", "approle"),
            approle_role_id=_read_file(role_id_file) if role_id_file else get("APPROLE_ROLE_ID", ""),
            approle_secret_id=_read_file(secret_id_file) if secret_id_file else "",
            executor_backend=backend,
            max_workers=integer("MAX_WORKERS", 4),
            execution_lease_seconds=integer("EXECUTION_LEASE_SECONDS", 15, minimum=2),
            shutdown_grace_seconds=integer("SHUTDOWN_GRACE_SECONDS", 20, minimum=0),
            job_network=network,
            job_proc=proc,
            job_uid_base=integer("JOB_UID_BASE", 200_000),
            job_memory_mb=integer("JOB_MEMORY_MB", 1024, minimum=16),
            job_max_processes=integer("JOB_MAX_PROCESSES", 128),
            job_cpu_seconds=integer("JOB_CPU_SECONDS", 600),
            job_open_files=integer("JOB_OPEN_FILES", 1024, minimum=16),
            job_tmpfs_mb=integer("JOB_TMPFS_MB", 64),
            job_max_output_bytes=integer("JOB_MAX_OUTPUT_BYTES", 1 << 20),
            unsafe_unsandboxed_jobs=unsafe == "true",
            default_timeout_seconds=integer("DEFAULT_TIMEOUT_SECONDS", 300),
            max_timeout_seconds=integer("MAX_TIMEOUT_SECONDS", 3600),
            rate_limit=rate,
            import_rate_limit=import_rate,
            value_max_bytes=integer("VALUE_MAX_BYTES", 64 * 1024),
            tls_cert_file=get("TLS_CERT_FILE", ""),
            tls_key_file=get("TLS_KEY_FILE", ""),
            docker_image=get("DOCKER_IMAGE", "localhost/vault-envvars/debian-python:bookworm-r2"),
            docker_host=get("DOCKER_HOST", e.get("DOCKER_HOST", "")),
            kubernetes_namespace=get("KUBERNETES_NAMESPACE", "env-vars-jobs"),
            kubernetes_image=get("KUBERNETES_IMAGE", "python:3.12-slim"),
            oidc_client_id=get("OIDC_CLIENT_ID", audience),
            oidc_client_secret=_read_file(client_secret_file) if client_secret_file else "",
            oidc_authorization_url=get("OIDC_AUTHORIZATION_URL", ""),
            oidc_scopes=get("OIDC_SCOPES", "openid"),
            public_url=public_url,
            secure_cookies=secure_cookies == "true",
            session_key=_read_file(session_key_file) if session_key_file else "",
            database_mount=get("DATABASE_MOUNT", "database"),
            job_token_role=get("JOB_TOKEN_ROLE", "envvars-job"),
            dynamic_lease_grace_seconds=integer("DYNAMIC_LEASE_GRACE_SECONDS", 30, minimum=5),
            lease_reap_seconds=integer("LEASE_REAP_SECONDS", 30),
            leak_hash_key=_read_file(leak_hash_key_file) if leak_hash_key_file else "",
            webhook_key=_read_file(webhook_key_file) if webhook_key_file else "",
            stack_webhook_url=stack_webhook_url,
            stack_webhook_secret=_read_file(stack_webhook_secret_file) if stack_webhook_secret_file else "",
            webhook_attempts=integer("WEBHOOK_ATTEMPTS", 5),
            webhook_backoff_ms=integer("WEBHOOK_BACKOFF_MS", 1000, minimum=0),
            webhook_expiring_days=integer("WEBHOOK_EXPIRING_DAYS", 7, minimum=0),
            webhook_expiry_check_seconds=integer("WEBHOOK_EXPIRY_CHECK_SECONDS", 3600),
            vault_login_key=_read_file(login_key_file) if login_key_file else "",
            vault_login_issuer=get("VAULT_LOGIN_ISSUER", "vault-envvars-service"),
            vault_login_audience=get("VAULT_LOGIN_AUDIENCE", "vault-envvars:user-role"),
        )
