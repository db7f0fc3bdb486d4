"""The FastAPI application, assembled from injected components (tests swap real servers for other real
servers, never for fakes)."""
import contextlib
import json
import logging
import time
import urllib.parse
import os
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from service.api import env_vars, executions, health
from service.api.env_vars import lock_wait
from service.api.deps import Components, RateLimit
from service.auth import TokenVerifier
from service.db import make_engine, migrate, session_factory
from service.executor.runner import Executor
from service.executor.sandbox import Sandbox, SandboxLimits
from service.identity import IdentityRegistry
from service.metrics import Metrics
from service.settings import Settings
from service.ui import routes as dashboard
from service.ui.oidc import OidcClient
from service.ui.session import CookieCodec
from service.vault_access import VaultGateway, VaultUnavailable

log = logging.getLogger("service")


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
    backend = backend or backend_for(settings)  # first: a service without its sandbox stops before anything
    migrate(settings.database_url)
    sessions = session_factory(make_engine(settings.database_url))
    gateway = VaultGateway(settings.vault_addr, settings.vault_ca_file, settings.kv_mount, settings.jwt_mount,
                           settings.jwt_role, settings.approle_mount, timeout=settings.vault_timeout_seconds)
    metrics = Metrics()
    executor_vault = None

    def vault_for_executor():
        nonlocal executor_vault
        if executor_vault is None:
            executor_vault = gateway.executor(settings.approle_role_id, settings.approle_secret_id)
        return executor_vault

    executor = Executor(sessions, vault_for_executor, backend, metrics, settings.max_workers)
    recovered = executor.recover()
    if recovered:
        log.warning(json.dumps({"event": "executions_interrupted", "count": recovered}))
    return Components(settings=settings, sessions=sessions, gateway=gateway,
                      verifier=TokenVerifier(settings.oidc_jwks_url, settings.oidc_issuer, settings.oidc_audience,
                                             settings.oidc_ca_file),
                      executor=executor, metrics=metrics, rate_limit=RateLimit(settings.rate_limit),
                      oidc=OidcClient(settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret,
                                      settings.oidc_ca_file, settings.oidc_authorization_url, settings.oidc_scopes),
                      cookies=CookieCodec(settings.session_key), identities=IdentityRegistry(sessions))


# Pages load only their own scripts and styles, post only to themselves, are never framed, and send no
# Referer (a page URL can carry a search term).
DASHBOARD_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                 b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"),
    (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
]


class NoStoreAndMetrics:
    """`Cache-Control: no-store` on every response, request latency metrics and a JSON request log line
    (method, route template, status, time: never a body, a query string or a header). Plain ASGI: the
    request path stays cheap."""

    def __init__(self, app, components: Components):
        self.app, self.components = app, components

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
                if scope["path"].startswith("/dashboard"):
                    headers += DASHBOARD_HEADERS
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            self.components.metrics.requests.labels(scope["method"], route, str(status["code"])).observe(elapsed)
            log.info(json.dumps({"event": "request", "method": scope["method"], "route": route,
                                 "status": status["code"], "ms": round(elapsed * 1000, 1)}))


def create_app(components: Optional[Components] = None, settings: Optional[Settings] = None) -> FastAPI:
    components = components or build_components(settings or Settings.from_env())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        components.executor.shutdown()  # running jobs are cancelled, never left behind

    app = FastAPI(title="env-vars service", version="2", lifespan=lifespan, description=(
        "Users declare environment variables (values write-only, kept only in Vault) and run jobs with a "
        "chosen set of them injected into the job's environment."))
    app.state.components = components

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError):
        # Pydantic echoes the rejected input: a value must never come back in an error body.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(SQLAlchemyError)
    async def database_error(_request: Request, exc: SQLAlchemyError):
        if lock_wait(exc):
            return JSONResponse({"detail": "the database is busy (a lock wait timed out); retry"}, status_code=503,
                                headers={"Retry-After": "1"})
        log.error(json.dumps({"event": "database_error", "error": type(exc).__name__}))
        return JSONResponse({"detail": "the database is unavailable"}, status_code=503)

    @app.exception_handler(VaultUnavailable)
    async def vault_error(_request: Request, exc: VaultUnavailable):
        return JSONResponse({"detail": str(exc)}, status_code=503)  # its reason: never a value or token

    @app.exception_handler(dashboard.LoginRequired)
    async def login_required(_request: Request, exc: dashboard.LoginRequired):
        return RedirectResponse(f"/dashboard/login?{urllib.parse.urlencode({'next': exc.next_path})}", 303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if not request.url.path.startswith("/dashboard"):
            return await http_exception_handler(request, exc)
        titles = {403: "Not allowed", 404: "Not found", 429: "Slow down", 503: "Unavailable"}
        return dashboard.render(request, "message.html", exc.status_code, title=titles.get(exc.status_code, "Error"),
                                message=str(exc.detail), link=("Back to your env vars", dashboard.HOME),
                                headers=exc.headers)

    app.add_middleware(NoStoreAndMetrics, components=components)
    app.include_router(env_vars.router)
    app.include_router(executions.router)
    app.include_router(health.router)
    app.include_router(dashboard.router)
    app.mount("/dashboard/static", StaticFiles(directory=os.path.join(os.path.dirname(dashboard.__file__), "static")),
              name="dashboard-static")
    return app
