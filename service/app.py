"""The FastAPI application, assembled from injected components (tests swap real servers for other real
servers, never for fakes): the API's and the dashboard's routes, the middleware, and what errors become
(JSON for the API, pages for the dashboard)."""
import contextlib
import gc
import json
import logging
import os
import time
import urllib.parse
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from service.api import activity, dynamic_env_vars, env_import, env_vars, executions, health, leaks, webhooks
from service.api.errors import domain_error_response, validation_error_response
from service.components import Components, build_components
from service.core.errors import DomainError, database_error
from service.settings import Settings
from service.ui import activity as activity_pages
from service.ui import dynamic_env_vars as dynamic_env_var_pages
from service.ui import env_import as import_pages
from service.ui import env_vars as env_var_pages
from service.ui import executions as execution_pages
from service.ui import leaks as leak_pages
from service.ui import login, pages
from service.ui.deps import LoginRequired
from service.vault import VaultUnavailable

log = logging.getLogger("service")


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
        components.executor.start()
        components.webhooks.watch_expiry(components.settings.webhook_expiring_days,
                                         components.settings.webhook_expiry_check_seconds)
        # What start-up built lives as long as the process: out of the collector's reach, a full collection
        # no longer walks it (such pauses were the p99 of a 1,000-row page, bench/).
        gc.collect()
        gc.freeze()
        yield
        # Running jobs get the grace period, then are stopped; unstarted ones go back to the queue.
        components.executor.shutdown()
        components.webhooks.shutdown()

    app = FastAPI(title="env-vars service", version="2", lifespan=lifespan, description=(
        "Users declare environment variables (values write-only, kept only in Vault) and run jobs with a "
        "chosen set of them injected into the job's environment."))
    app.state.components = components

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError):
        if _dashboard(request):
            return pages.domain_error_page(request, exc)
        return domain_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError):
        return validation_error_response(exc)

    @app.exception_handler(SQLAlchemyError)
    async def database_failed(_request: Request, exc: SQLAlchemyError):
        # A failure no operation caught to say what became of it (a read, a job's start): JSON on any path.
        return domain_error_response(database_error(exc))

    @app.exception_handler(VaultUnavailable)
    async def vault_error(_request: Request, exc: VaultUnavailable):
        return JSONResponse({"detail": str(exc)}, status_code=503)  # its reason: never a value or token

    @app.exception_handler(LoginRequired)
    async def login_required(_request: Request, exc: LoginRequired):
        return RedirectResponse(f"/dashboard/login?{urllib.parse.urlencode({'next': exc.next_path})}", 303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if _dashboard(request):
            return pages.http_error_page(request, exc)
        return await http_exception_handler(request, exc)

    app.add_middleware(NoStoreAndMetrics, components=components)
    app.include_router(env_import.router)  # before env_vars: its paths are under env_vars' prefix
    app.include_router(leaks.router)  # the same
    app.include_router(env_vars.router)
    app.include_router(dynamic_env_vars.router)
    app.include_router(activity.router)
    app.include_router(webhooks.router)
    app.include_router(executions.router)
    app.include_router(health.router)
    for dashboard in (login, env_var_pages, leak_pages, execution_pages, import_pages, activity_pages,
                      dynamic_env_var_pages):
        app.include_router(dashboard.router)
    app.mount("/dashboard/static", StaticFiles(directory=os.path.join(os.path.dirname(pages.__file__), "static")),
              name="dashboard-static")
    return app


def _dashboard(request: Request) -> bool:
    return request.url.path.startswith("/dashboard")
