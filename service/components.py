"""The service's components, built once from the settings: what the operations (service/core), the API,
the dashboard and the executor share."""
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass

from sqlalchemy.orm import sessionmaker

from service.auth import TokenVerifier
from service.auth.identities import IdentityRegistry
from service.auth.oidc import OidcClient
from service.auth.session import CookieCodec
from service.db import embedded, make_engine, migrate, session_factory
from service.executor.leak_watch import LeakWatch
from service.executor.leases import LeaseBroker, LeaseCollector, LeaseMetrics, LeaseSettings
from service.executor.runner import Executor, ExecutorTiming
from service.executor.sandbox import Sandbox, SandboxLimits
from service.metrics import Metrics, StateCollector
from service.rate_limit import RateLimit
from service.settings import Settings, SettingsError
from service.vault import VaultGateway
from service.vault.login import LoginKeyError, VaultLoginSigner
from service.webhooks import Webhooks

log = logging.getLogger("service")


@dataclass
class Components:
    settings: Settings
    sessions: sessionmaker
    gateway: VaultGateway
    verifier: TokenVerifier
    executor: Executor
    metrics: Metrics
    rate_limit: RateLimit
    oidc: OidcClient  # the dashboard's login
    cookies: CookieCodec  # the dashboard's session
    identities: IdentityRegistry
    import_rate_limit: RateLimit  # .env imports (service/core/env_import.py)
    leaks: LeakWatch  # findings in job output (service/executor/leak_watch.py)
    webhooks: Webhooks  # signed notifications (service/webhooks.py)

    @property
    def embedded_database(self) -> bool:
        return embedded(self.sessions.kw["bind"])


def service_key(settings: Settings, explicit: str, purpose: str) -> bytes:
    """A key of the service's: the one given (a file), else derived from the session key, which both stacks
    make as a Pulumi secret and hand every replica as a file; b"" without either."""
    if explicit:
        return explicit.encode()
    if settings.session_key:
        return hmac.new(settings.session_key.encode(), purpose.encode(), hashlib.sha256).digest()
    return b""


def job_sandbox(settings: Settings) -> Sandbox:
    limits = SandboxLimits(memory_bytes=settings.job_memory_mb << 20, processes=settings.job_max_processes,
                           cpu_seconds=settings.job_cpu_seconds, open_files=settings.job_open_files,
                           tmpfs_bytes=settings.job_tmpfs_mb << 20)
    return Sandbox(uid_base=settings.job_uid_base, network=settings.job_network, proc=settings.job_proc,
                   limits=limits)


def backend_for(settings: Settings):
    """The configured executor backend. The subprocess backend refuses to start without its sandbox
    (SandboxUnavailable says why and what to change) unless unsandboxed jobs were allowed explicitly."""
    if settings.executor_backend == "docker":
        from service.executor.docker_backend import DockerBackend

        return DockerBackend(settings.docker_image, settings.docker_host, job_sandbox(settings))
    if settings.executor_backend == "kubernetes":
        from service.executor.kubernetes_backend import KubernetesBackend

        return KubernetesBackend(settings.kubernetes_namespace, settings.kubernetes_image,
                                 limits=job_sandbox(settings).limits)
    from service.executor.subprocess_backend import SubprocessBackend

    if settings.unsafe_unsandboxed_jobs:
        log.warning(json.dumps({"event": "UNSANDBOXED_JOBS", "warning": (
            "ENVVARS_UNSAFE_UNSANDBOXED_JOBS=true: every job runs as the service's own user and can read its "
            "credentials, its database and other jobs; use this on a single-user laptop only")}))
        return SubprocessBackend(None, settings.max_workers, settings.job_max_output_bytes)
    sandbox = job_sandbox(settings)
    sandbox.check()
    return SubprocessBackend(sandbox, settings.max_workers, settings.job_max_output_bytes)


def build_components(settings: Settings, backend=None) -> Components:
    try:
        signer = VaultLoginSigner(settings.vault_login_key, settings.vault_login_issuer, settings.vault_login_audience)
    except LoginKeyError as e:
        raise SettingsError(f"ENVVARS_VAULT_LOGIN_KEY_FILE: {e}") from None
    backend = backend or backend_for(settings)  # first: a service without its sandbox stops before anything
    migrate(settings.database_url)
    sessions = session_factory(make_engine(settings.database_url))
    gateway = VaultGateway(settings.vault_addr, settings.vault_ca_file, settings.kv_mount, settings.jwt_mount,
                           settings.jwt_role, settings.approle_mount, timeout=settings.vault_timeout_seconds,
                           login_signer=signer)
    metrics = Metrics()
    metrics.watch(StateCollector(sessions, gateway.status, gateway.server_certificate_expiry,
                                 tls_cert_file=settings.tls_cert_file, vault_ca_file=settings.vault_ca_file))
    executor_vault = None

    def vault_for_executor():
        nonlocal executor_vault
        if executor_vault is None:
            executor_vault = gateway.executor(settings.approle_role_id, settings.approle_secret_id)
        return executor_vault

    webhooks = Webhooks(sessions, service_key(settings, settings.webhook_key, "webhooks"), settings.stack_webhook_url,
                        settings.stack_webhook_secret.encode(), attempts=settings.webhook_attempts,
                        backoff_seconds=settings.webhook_backoff_ms / 1000)
    leases = LeaseBroker(sessions, vault_for_executor, gateway, LeaseMetrics(metrics.registry), LeaseSettings(
        mount=settings.database_mount, token_role=settings.job_token_role,
        grace_seconds=settings.dynamic_lease_grace_seconds, reap_seconds=settings.lease_reap_seconds),
        emit=webhooks.emit)
    metrics.registry.register(LeaseCollector(sessions))
    leaks = LeakWatch(sessions, metrics, service_key(settings, settings.leak_hash_key, "leak-hashes")
                      or b"envvars-leak-hash", webhooks.emit)
    executor = Executor(sessions, vault_for_executor, backend, metrics, settings.max_workers,
                        ExecutorTiming(lease_seconds=settings.execution_lease_seconds,
                                       grace_seconds=settings.shutdown_grace_seconds), leases=leases, leaks=leaks)
    return Components(settings=settings, sessions=sessions, gateway=gateway,
                      verifier=TokenVerifier(settings.oidc_jwks_url, settings.oidc_issuer, settings.oidc_audience,
                                             settings.oidc_ca_file),
                      executor=executor, metrics=metrics, rate_limit=RateLimit(settings.rate_limit),
                      oidc=OidcClient(settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret,
                                      settings.oidc_ca_file, settings.oidc_authorization_url, settings.oidc_scopes),
                      cookies=CookieCodec(settings.session_key), identities=IdentityRegistry(sessions),
                      import_rate_limit=RateLimit(settings.import_rate_limit), leaks=leaks,
                      webhooks=webhooks)
