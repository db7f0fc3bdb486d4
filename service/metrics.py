"""Prometheus metrics of the service (never a value, never a user's env var name, never a user id in a label).

Counters and the latency histogram are updated where things happen. The state the alerts need (env vars
per user, Vault's seal state as this replica sees it, certificate expiry) is read when /metrics is scraped
(`StateCollector`), so it is as fresh as the scrape and costs nothing between scrapes."""
import datetime
import json
import logging
from typing import Callable, Iterator, Optional

from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.auth import AUTH_FAILURE_REASONS
from service.db import EnvVar, now
from service.leak_detector import DETECTORS

log = logging.getLogger("service")

# Buckets of envvars_env_vars_per_user: how many users hold up to 1, 2, 5, ... env vars. A fixed number of
# series whatever the number of users (one series per user would grow without bound and name users).
PER_USER_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Histogram("envvars_http_request_seconds", "HTTP request latency",
                                  ["method", "route", "status"], registry=self.registry)
        self.vault_errors = Counter("envvars_vault_errors_total", "Vault calls that failed", ["operation"],
                                    registry=self.registry)
        self.executions = Counter("envvars_executions_total", "Finished executions by outcome", ["outcome"],
                                  registry=self.registry)
        self.missing_env_vars = Counter("envvars_missing_env_var_failures_total",
                                        "Executions failed before start because a value was missing",
                                        registry=self.registry)
        self.rate_limited = Counter("envvars_rate_limited_total", "Requests refused by the rate limit",
                                    registry=self.registry)
        self.expired_env_vars = Counter("envvars_expired_env_var_failures_total",
                                        "Executions failed before start because a selected env var had expired",
                                        registry=self.registry)
        self.auth_failures = Counter("envvars_auth_failures_total",
                                     "Refused authentications (API tokens, dashboard sign-ins, Vault logins) by reason",
                                     ["reason"], registry=self.registry)
        for reason in AUTH_FAILURE_REASONS:  # every series exists from the start: rate() sees the first failure
            self.auth_failures.labels(reason=reason)
        self.leak_findings = Counter("envvars_leak_findings_total",
                                     "Secrets found in job output (service/leak_detector.py), by detector",
                                     ["detector"], registry=self.registry)
        for detector in DETECTORS:  # a fixed set: the alert's increase() sees the first finding
            self.leak_findings.labels(detector=detector)

    def auth_failed(self, reason: str) -> None:
        self.auth_failures.labels(reason=reason if reason in AUTH_FAILURE_REASONS else "invalid").inc()

    def watch(self, state: "StateCollector") -> None:
        self.registry.register(state)


def certificate_expiry(pem_file: str) -> Optional[float]:
    """The earliest notAfter (unix seconds) of the certificates in a PEM file (a bundle expires with its
    first certificate); None when there is none or the file cannot be read."""
    try:
        with open(pem_file, "rb") as f:
            certs = x509.load_pem_x509_certificates(f.read())
    except (OSError, ValueError):
        return None
    return min(c.not_valid_after_utc.timestamp() for c in certs) if certs else None


class StateCollector(Collector):
    """Read at each scrape: env vars per user (one grouped query), Vault's state as this replica sees it
    (its /v1/sys/health), and the expiry of the certificates the service serves and trusts."""

    def __init__(self, sessions: sessionmaker, vault_status: Callable, vault_server_expiry: Callable[[], Optional[float]],
                 tls_cert_file: str = "", vault_ca_file: str = ""):
        self._sessions, self._vault_status, self._vault_server_expiry = sessions, vault_status, vault_server_expiry
        self._tls_cert_file, self._vault_ca_file = tls_cert_file, vault_ca_file

    def collect(self) -> Iterator[Metric]:
        try:
            with self._sessions() as s:
                per_user, (expired, soon) = self._per_user(s), self._expiry(s)
        except SQLAlchemyError as err:  # the scrape still reports the rest
            log.warning(json.dumps({"event": "metrics_database_error", "error": type(err).__name__}))
        else:
            yield per_user
            yield GaugeMetricFamily("envvars_env_vars_expired", "Env vars past their expires_at", value=expired)
            yield GaugeMetricFamily("envvars_env_vars_expiring_within_7d",
                                    "Env vars not expired yet whose expires_at is within 7 days", value=soon)
        status = self._vault_status()
        for name, doc, value in (
                ("envvars_vault_reachable", "1 if Vault answered the service's health check", status.reachable),
                ("envvars_vault_sealed", "1 if the Vault node the service talks to answered sealed", status.sealed),
                ("envvars_vault_active", "1 if the Vault node the service talks to answered as the active node",
                 status.active)):
            yield GaugeMetricFamily(name, doc, value=int(value))
        expiry = GaugeMetricFamily("envvars_tls_certificate_expiry_timestamp_seconds",
                                   "When a certificate expires (unix seconds): the service's own (service), the "
                                   "CA it trusts for Vault (vault_ca), the one Vault presents (vault_server)",
                                   labels=["certificate"])
        for label, when in (("service", self._tls_cert_file and certificate_expiry(self._tls_cert_file)),
                            ("vault_ca", self._vault_ca_file and certificate_expiry(self._vault_ca_file)),
                            ("vault_server", self._vault_server_expiry())):
            if when:
                expiry.add_metric([label], when)
        yield expiry

    @staticmethod
    def _per_user(s: Session) -> HistogramMetricFamily:
        """How many users hold how many env vars, counted by the database: one row per distinct count."""
        per_owner = select(func.count().label("n")).select_from(EnvVar).group_by(EnvVar.owner).subquery()
        rows = s.execute(select(per_owner.c.n, func.count()).group_by(per_owner.c.n)).all()
        buckets, users, total = [], sum(u for _, u in rows), sum(n * u for n, u in rows)
        for bound in PER_USER_BUCKETS:
            buckets.append((str(float(bound)), sum(u for n, u in rows if n <= bound)))
        buckets.append(("+Inf", users))
        return HistogramMetricFamily("envvars_env_vars_per_user",
                                     "Users by the number of env vars they hold (count: users with any; sum: env vars)",
                                     buckets=buckets, sum_value=total)

    @staticmethod
    def _expiry(s: Session) -> tuple[int, int]:
        """Every user's env vars expired, and expiring within 7 days but not yet."""
        t = now()
        soon = t + datetime.timedelta(days=7)
        expired, upcoming = s.execute(select(
            func.count().filter(EnvVar.expires_at <= t),
            func.count().filter(EnvVar.expires_at > t, EnvVar.expires_at <= soon))
            .where(EnvVar.expires_at.is_not(None), EnvVar.expires_at <= soon, EnvVar.visible())).one()
        return int(expired), int(upcoming)
