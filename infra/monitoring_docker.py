"""Prometheus, Alertmanager and a Pushgateway on the local container engine, from the monitoring image
(Debian's packages, tools/images.sh). Prometheus is on the stack's network (it scrapes the Vault nodes and
the service there) and on a network of the monitoring's own, where the Alertmanager and the Pushgateway are
(aliases prometheus, alertmanager, pushgateway): the service's container, where subprocess jobs share the
network, reaches neither, so no job can silence an alert or push a snapshot that never happened; the
snapshot agent joins that network to push. Configuration, the Vault CA and every monitoring/rules/*.yml reach them as files
copied onto their volumes before they start; read-only roots, non-root, Prometheus and Alertmanager published
on 127.0.0.1 only."""
from dataclasses import dataclass, field
from typing import Optional

import pulumi

from infra import monitoring_config as mc
from infra.providers import docker


@dataclass
class MonitoringDockerArgs:
    image: str  # the monitoring image
    network_name: pulumi.Input[str]
    targets: mc.ScrapeTargets  # as containers on that network reach them
    vault_ca_pem: pulumi.Input[str] = ""  # for targets.vault_tls
    routing: mc.AlertRouting = field(default_factory=mc.AlertRouting)
    interval_seconds: int = 10
    retention: str = "15d"
    prometheus_host_port: pulumi.Input[int] = 0  # 0: a free port, kept while the container lives
    alertmanager_host_port: pulumi.Input[int] = 0
    labels: dict[str, str] = field(default_factory=dict)
    docker_host: Optional[str] = None


class MonitoringDocker(pulumi.ComponentResource):
    """Outputs: `prometheus_url` and `alertmanager_url` (on the host), `pushgateway_url` (on
    `network_name`, the monitoring's own network, for the snapshot agent) and `pushgateway_host_url`."""

    prometheus_url: pulumi.Output[str]
    alertmanager_url: pulumi.Output[str]
    pushgateway_url: pulumi.Output[str]
    network_name: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringDockerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:MonitoringDocker", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}-{name}"
        user = f"{mc.UID}:{mc.GID}"
        volumes = {p: docker.Volume(f"{name}-{p}", volume_name=f"{prefix}-{p}", labels=args.labels,
                                    docker_host=args.docker_host, opts=child)
                   for p in ("prometheus-config", "prometheus-rules", "prometheus-data", "alertmanager-config",
                             "alertmanager-data", "pushgateway-data")}
        network = docker.Network(f"{name}-net", network_name=f"{prefix}-net", labels=args.labels,
                                 docker_host=args.docker_host, opts=child)
        own_network = network.id.apply(lambda _: f"{prefix}-net")

        def container(role: str, command: list[str], mounts: dict[str, str], files: pulumi.Input[dict],
                      port: Optional[tuple[int, pulumi.Input[int]]], mem: str,
                      networks: Optional[list[pulumi.Input[str]]] = None) -> docker.Container:
            return docker.Container(
                f"{name}-{role}", container_name=f"{prefix}-{role}", image=args.image, command=command,
                networks=[{"name": n, "aliases": [role]} for n in networks or [own_network]],
                volumes=[{"source": f"{prefix}-{v}", "target": t} for v, t in mounts.items()],
                ports=[{"internal": port[0], "external": port[1]}] if port else [],
                user=user, read_only=True, files=files, mem_limit=mem,
                labels={**args.labels, "vault-envvars.role": "monitoring"},
                wait_http_path="/-/ready" if port else "", docker_host=args.docker_host,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[network, *(volumes[v] for v in mounts)]))

        # Published on 127.0.0.1 too: `up` reports the config-admin token's expiry there (jobs, in the service's
        # container, reach neither this network nor the host's loopback).
        pushgateway = container(
            "pushgateway", ["prometheus-pushgateway", f"--web.listen-address=:{mc.PUSHGATEWAY_PORT}",
                            f"--persistence.file={mc.PUSHGATEWAY_DATA}/data/metrics"],
            {"pushgateway-data": mc.PUSHGATEWAY_DATA}, {f"{mc.PUSHGATEWAY_DATA}/data": {"directory": True, "mode": 0o750}},
            (mc.PUSHGATEWAY_PORT, 0), "64m")
        alertmanager = container(
            "alertmanager", ["prometheus-alertmanager", f"--config.file={mc.CONFIG_DIR}/alertmanager.yml",
                             f"--storage.path={mc.ALERTMANAGER_DATA}/data", f"--web.listen-address=:{mc.ALERTMANAGER_PORT}",
                             "--cluster.listen-address="],  # one instance: no gossip port
            {"alertmanager-config": mc.CONFIG_DIR, "alertmanager-data": mc.ALERTMANAGER_DATA},
            # A secret: a webhook URL often carries a token (encrypted in the state, never in the container's config).
            pulumi.Output.secret({
                f"{mc.CONFIG_DIR}/alertmanager.yml": {"content": mc.alertmanager_config(args.routing), "mode": 0o440},
                f"{mc.ALERTMANAGER_DATA}/data": {"directory": True, "mode": 0o750}}),
            (mc.ALERTMANAGER_PORT, args.alertmanager_host_port), "128m")
        prometheus_yml = mc.prometheus_config(args.targets, interval_seconds=args.interval_seconds)
        rules = mc.rule_files()
        files = pulumi.Output.from_input(args.vault_ca_pem).apply(lambda ca: {
            f"{mc.CONFIG_DIR}/prometheus.yml": {"content": prometheus_yml, "mode": 0o440},
            **({mc.VAULT_CA_FILE: {"content": ca, "mode": 0o444}} if ca else {}),
            **{f"{mc.RULES_MOUNT}/{n}": {"content": text, "mode": 0o440} for n, text in rules.items()},
            f"{mc.PROMETHEUS_DATA}/data": {"directory": True, "mode": 0o750},
        })
        prometheus = container(
            "prometheus", ["prometheus", f"--config.file={mc.CONFIG_DIR}/prometheus.yml",
                           f"--storage.tsdb.path={mc.PROMETHEUS_DATA}/data",
                           f"--storage.tsdb.retention.time={args.retention}",
                           f"--web.listen-address=:{mc.PROMETHEUS_PORT}"],
            {"prometheus-config": mc.CONFIG_DIR, "prometheus-rules": mc.RULES_MOUNT,
             "prometheus-data": mc.PROMETHEUS_DATA},
            files, (mc.PROMETHEUS_PORT, args.prometheus_host_port), "512m", [args.network_name, own_network])
        self.prometheus_url = _host_url(prometheus)
        self.alertmanager_url = _host_url(alertmanager)
        self.pushgateway_url = pushgateway.id.apply(lambda _: f"http://pushgateway:{mc.PUSHGATEWAY_PORT}")
        self.pushgateway_host_url = _host_url(pushgateway)
        self.network_name = own_network
        self.register_outputs({"prometheus_url": self.prometheus_url, "alertmanager_url": self.alertmanager_url,
                               "pushgateway_url": self.pushgateway_url, "pushgateway_host_url": self.pushgateway_host_url,
                               "network_name": self.network_name})


def _host_url(container: docker.Container) -> pulumi.Output[str]:
    return container.host_ports.apply(lambda p: f"http://127.0.0.1:{int(p[0]['external'])}")
