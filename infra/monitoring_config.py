"""The monitoring's configuration, shared by both stacks: pure functions rendering prometheus.yml (the
scrape jobs monitoring/rules/*.yml rely on) and alertmanager.yml, and the repository's rule files.

Scrape job names are a contract with the rules: `vault` (every node's /v1/sys/metrics, one target per node,
the instance label naming the node), `envvars-service` (each service replica's /metrics),
`vault-snapshots` (the Pushgateway the snapshot agent pushes to, honor_labels), `prometheus`,
`alertmanager`."""
import glob
import os
from dataclasses import dataclass, field
from typing import Optional

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES_DIR = os.path.join(REPO_ROOT, "monitoring", "rules")

PROMETHEUS_PORT, PUSHGATEWAY_PORT, ALERTMANAGER_PORT = 9090, 9091, 9093
# Inside the monitoring containers (the same paths in Docker and on Kubernetes).
CONFIG_DIR = "/config"  # prometheus.yml, alertmanager.yml, vault-ca.pem
RULES_MOUNT = "/rules"  # every monitoring/rules/*.yml
PROMETHEUS_DATA = "/prometheus"
ALERTMANAGER_DATA = "/alertmanager"
PUSHGATEWAY_DATA = "/pushgateway"
VAULT_CA_FILE = f"{CONFIG_DIR}/vault-ca.pem"
# The monitoring image's user (tools/monitoring/install.sh).
UID = GID = 990
# The node's name from its address: vault-1:8200 -> vault-1, vault-0.vault-internal.ns.svc:8200 -> vault-0.
NODE_FROM_ADDRESS = r"([^.:]+).*"


@dataclass(frozen=True)
class ScrapeTargets:
    """What Prometheus scrapes, as it reaches each from where it runs (host:port, no scheme)."""

    vault_nodes: list[str]
    vault_tls: bool  # https with the stack's CA (raft, prod); plain http (dev mode)
    pushgateway: str
    alertmanager: str
    # Static service replicas (Docker), or a DNS name whose A records are every replica (Kubernetes: a
    # headless Service) with its port.
    service: list[str] = field(default_factory=list)
    service_dns: Optional[tuple[str, int]] = None


def prometheus_config(targets: ScrapeTargets, *, interval_seconds: int = 10) -> str:
    """prometheus.yml: scrape and evaluate every `interval_seconds`, load every rule file, alert through
    the Alertmanager."""
    every = f"{interval_seconds}s"
    vault: dict = {
        "job_name": "vault",
        "metrics_path": "/v1/sys/metrics",
        "params": {"format": ["prometheus"]},
        "scheme": "https" if targets.vault_tls else "http",
        "static_configs": [{"targets": list(targets.vault_nodes)}],
        "relabel_configs": [{"source_labels": ["__address__"], "regex": NODE_FROM_ADDRESS,
                             "target_label": "instance", "replacement": "$1"}],
    }
    if targets.vault_tls:
        vault["tls_config"] = {"ca_file": VAULT_CA_FILE}
    service: dict = {"job_name": "envvars-service", "metrics_path": "/metrics"}
    if targets.service_dns:
        name, port = targets.service_dns
        service["dns_sd_configs"] = [{"names": [name], "type": "A", "port": port, "refresh_interval": every}]
    else:
        service["static_configs"] = [{"targets": list(targets.service)}]
        service["relabel_configs"] = [{"source_labels": ["__address__"], "regex": NODE_FROM_ADDRESS,
                                       "target_label": "instance", "replacement": "$1"}]
    config = {
        "global": {"scrape_interval": every, "evaluation_interval": every, "scrape_timeout": f"{min(interval_seconds, 10)}s"},
        "rule_files": [f"{RULES_MOUNT}/*.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [targets.alertmanager]}]}]},
        "scrape_configs": [
            vault,
            service,
            {"job_name": "vault-snapshots", "honor_labels": True,
             "static_configs": [{"targets": [targets.pushgateway]}]},
            {"job_name": "prometheus", "static_configs": [{"targets": [f"localhost:{PROMETHEUS_PORT}"]}]},
            {"job_name": "alertmanager", "static_configs": [{"targets": [targets.alertmanager]}]},
        ],
    }
    return "# Rendered by infra/monitoring_config.py: edit that, not this.\n" + yaml.safe_dump(config, sort_keys=False)


@dataclass(frozen=True)
class AlertRouting:
    """Where alerts go. No webhook: a receiver that sends nothing (alerts still show in the Alertmanager)."""

    webhook_url: str = ""
    group_wait_seconds: int = 10  # the first notification of a new group, after its first alert
    group_interval_seconds: int = 60  # further alerts joining a group already notified
    repeat_hours: int = 4  # an alert still firing is sent again


def alertmanager_config(routing: AlertRouting) -> str:
    receiver = {"name": "webhook", "webhook_configs": [{"url": routing.webhook_url, "send_resolved": True}]} \
        if routing.webhook_url else {"name": "null"}
    config = {
        "route": {
            "receiver": receiver["name"],
            "group_by": ["alertname", "instance"],
            "group_wait": f"{routing.group_wait_seconds}s",
            "group_interval": f"{routing.group_interval_seconds}s",
            "repeat_interval": f"{routing.repeat_hours}h",
        },
        "receivers": [receiver],
    }
    return "# Rendered by infra/monitoring_config.py: edit that, not this.\n" + yaml.safe_dump(config, sort_keys=False)


def rule_files(rules_dir: str = RULES_DIR) -> dict[str, str]:
    """Every rule file of the repository, by file name: both stacks load them all."""
    found = {}
    for path in sorted(glob.glob(os.path.join(rules_dir, "*.yml"))):
        with open(path) as f:
            found[os.path.basename(path)] = f.read()
    if not found:
        raise ValueError(f"no rule files (*.yml) in {rules_dir}")
    return found
