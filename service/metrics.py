"""Prometheus metrics of the service (never a value, never a user's env var name in a label)."""
from prometheus_client import CollectorRegistry, Counter, Histogram


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
