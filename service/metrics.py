"""Prometheus metrics of the service (never a value, never a user's env var name in a label)."""
import json
import logging
from typing import Callable, Iterator, Optional

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


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
        self.expiry = ExpiryMetrics(self.registry)


# --- env var expiry (issue 16, item 4) ---------------------------------------------------------------------
# Counts over every user's env vars, computed from the database at scrape time: no label names a user or
# an env var.

class ExpiryMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.failures = Counter("envvars_expired_env_var_failures_total",
                                "Executions failed before start because a selected env var had expired",
                                registry=registry)

    def watch(self, counts: Callable[[], tuple[int, int]]) -> None:
        """Publishes the gauges from counts() -> (expired, expiring within 7 days), called at each scrape."""
        self.registry.register(_ExpiryCollector(counts))


class _ExpiryCollector(Collector):
    def __init__(self, counts: Callable[[], tuple[int, int]]):
        self._counts = counts

    def describe(self) -> list:
        return []  # no sample at registration: the database is only asked at a scrape

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts: Optional[tuple[int, int]] = None
        try:
            counts = self._counts()
        except Exception as err:  # noqa: BLE001 (a database down must not fail the scrape of every other metric)
            logging.getLogger("service").warning(json.dumps({"event": "expiry_metrics_failed",
                                                             "error": type(err).__name__}))
        if counts is None:
            return
        expired, soon = counts
        yield GaugeMetricFamily("envvars_env_vars_expired", "Env vars past their expires_at", value=expired)
        yield GaugeMetricFamily("envvars_env_vars_expiring_within_7d",
                                "Env vars not expired yet whose expires_at is within 7 days", value=soon)
