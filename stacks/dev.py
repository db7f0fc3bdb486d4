"""The `dev` stack on the local container engine: Vault in dev mode (one in-memory server) or a 3-node
TLS Raft cluster with bootstrap and scheduled snapshots; its configuration; a dev identity provider;
Prometheus, Alertmanager and a Pushgateway beside them. Read in order: cluster -> bootstrap -> configure ->
service (and, in raft mode, the snapshots and their restore check)."""
from dataclasses import dataclass
from typing import Optional

import pulumi

from infra.dev_identity import DevIdentity, DevIdentityArgs, browser_login_url, issuer_url, jwks_url
from infra.monitoring_config import AlertRouting, ScrapeTargets
from infra.monitoring_docker import MonitoringDocker, MonitoringDockerArgs
from infra.postgres_docker import PostgresDocker, PostgresDockerArgs
from infra.providers.random import FreePort, RandomSecret
from infra.providers.vault import VaultConnection
from infra.providers.vault_bootstrap import VaultBootstrap
from infra.providers.vault_token import TokenRenewal
from infra.restore_check_docker import RestoreCheckDocker, RestoreCheckDockerArgs
from infra.service_docker import ServiceDocker, ServiceDockerArgs
from infra.vault_configuration import VaultConfiguration
from infra.vault_dev_server import VaultDevServer, VaultDevServerArgs
from infra.vault_raft_docker import VaultRaftDocker, VaultRaftDockerArgs
from infra.vault_snapshots_docker import SnapshotStoreArgs, VaultSnapshotsDocker, VaultSnapshotsDockerArgs
from stacks import export
from stacks.config import DevConfig, VaultSettings, vault_duration
from stacks.dev_database import dev_database_args
from stacks.service import service_connection
from stacks.vault import admin_policy, configure_vault
from tools.lib.stack_outputs import Out

Cluster = VaultDevServer | VaultRaftDocker


@dataclass
class _Vault:
    """The cluster, and what configures it: its connection with the config-admin token (dev mode: the root
    token) and, in raft mode, the bootstrap that made that token."""

    cluster: Cluster
    admin: VaultConnection
    bootstrap: Optional[VaultBootstrap]


def deploy() -> dict[str, pulumi.Output]:
    cfg = DevConfig.load()
    scheme = "https" if cfg.vault_mode == "raft" else "http"
    # The issuer is named before the cluster exists: Vault reaches its own OIDC provider on loopback inside
    # its container; the service and the other containers reach Vault by its network alias (the cluster's
    # internal_address).
    in_network = f"{scheme}://vault:8200"
    settings = VaultSettings.load(default_key_source={"jwks_url": jwks_url(f"{scheme}://127.0.0.1:8200"),
                                                      "issuer": issuer_url(in_network)})
    labels = {"vault-envvars.stack": pulumi.get_stack()}
    outputs: dict[str, pulumi.Output] = {}

    vault = _cluster(cfg, settings, labels, outputs)
    cluster, admin = vault.cluster, vault.admin
    # The service's host port is picked before its container exists: the dashboard's OIDC redirect URI
    # is registered with that port, and stays valid when the container is replaced.
    service_port = pulumi.Output.from_input(cfg.service_host_port) if cfg.service_host_port else \
        FreePort("service-host-port").port.apply(int)
    service_url = service_port.apply(lambda p: f"http://127.0.0.1:{p}")
    identity = DevIdentity("identity", DevIdentityArgs(
        connection=admin, issuer_base_url=in_network,
        redirect_uris=[service_url.apply(lambda u: f"{u}/dashboard/callback"),
                       service_port.apply(lambda p: f"http://localhost:{p}/dashboard/callback")]))
    configuration, postgres = _configure(cfg, settings, vault, identity, labels)
    monitoring = _monitoring(cfg, cluster, labels)
    if monitoring:
        outputs.update({Out.PROMETHEUS_URL: monitoring.prometheus_url, Out.ALERTMANAGER_URL: monitoring.alertmanager_url})
    if isinstance(cluster, VaultRaftDocker):
        # Every preview/up renews the config-admin token; its expiry goes to the Pushgateway for the alert.
        TokenRenewal("vault-admin-token", connection=admin, token_name="config-admin",  # noqa: S106 (a name)
                     node_addresses=cluster.node_addresses,
                     report_url=monitoring.pushgateway_host_url if monitoring else "")

    # Users' tokens come from the dev provider unless the stack names another key source.
    dev_idp = not settings.oidc_discovery_url and not settings.validation_pubkeys and \
        settings.jwks_url == jwks_url(f"{scheme}://127.0.0.1:8200")
    connection, service_outputs = service_connection(
        settings, configuration, vault_address=cluster.internal_address, vault_ca_pem=cluster.ca_cert_pem,
        jwks_url=jwks_url(in_network) if dev_idp else settings.jwks_url, identity=identity if dev_idp else None,
        webhook=cfg.platform_webhook, public_url=service_url)
    outputs.update(service_outputs)
    if dev_idp:  # the dashboard logs users in through the dev provider, in the Vault UI on the host
        connection.oidc_authorization_url = cluster.host_address.apply(browser_login_url)
    service = ServiceDocker("envvars", ServiceDockerArgs(
        base_image=cfg.base_image, network_name=cluster.network_name, connection=connection, host_port=service_port,
        rate_limit=cfg.service_rate_limit, labels=labels,
    ))
    if vault.bootstrap:
        outputs.update(_snapshots(cfg, cluster, vault.bootstrap, configuration, service, monitoring, labels))
    if postgres:
        outputs[Out.POSTGRES_CONTAINER] = postgres.container_name
    outputs.update({
        Out.SERVICE_URL: service.url,
        Out.DASHBOARD_URL: service.url.apply(lambda u: f"{u}/dashboard/"),
        Out.SERVICE_CONTAINER: service.container_name,
        Out.OIDC_CLIENT_ID: identity.client_id,
        Out.OIDC_CLIENT_SECRET: identity.client_secret,
        Out.VAULT_ADDRESS: cluster.host_address,
        Out.JWT_ISSUER: identity.issuer,
        Out.DEMO_USER_PASSWORDS: identity.demo_passwords,
        Out.EXECUTOR_ROLE_ID: configuration.executor_role_id,
    })
    return export(outputs)


def _cluster(cfg: DevConfig, settings: VaultSettings, labels: dict[str, str],
             outputs: dict[str, pulumi.Output]) -> _Vault:
    """Dev mode: one in-memory server and its root token. Raft mode: the cluster and its bootstrap (root
    kept for experiments: prod revokes it); its nodes, CA, keys and tokens go to `outputs`."""
    if cfg.vault_mode == "dev":
        root_token = RandomSecret("vault-dev-root-token", length=24, prefix="dev-")
        dev = VaultDevServer("vault", VaultDevServerArgs(
            image=cfg.vault_image, root_token=root_token.result, host_port=cfg.vault_host_port, labels=labels,
            flavor=settings.server_flavor,
        ))
        outputs[Out.VAULT_ROOT_TOKEN] = dev.root_token
        return _Vault(dev, VaultConnection(dev.host_address, dev.root_token, dev.ca_cert_pem), None)
    raft = VaultRaftDocker("vault", VaultRaftDockerArgs(
        image=cfg.vault_image, nodes=cfg.raft.replicas, flavor=settings.server_flavor, labels=labels,
        tls_valid_seconds=cfg.tls_validity, tls_renew_before=cfg.tls_renew_before,
    ))
    bootstrap = VaultBootstrap(
        "vault-bootstrap", node_addresses=raft.node_addresses, ca_cert_pem=raft.ca_cert_pem,
        admin_policy=admin_policy(settings),
        key_shares=cfg.raft.key_shares, key_threshold=cfg.raft.key_threshold,
        # Dev keeps root for experiments; prod revokes it after bootstrap.
        revoke_root=False, admin_token_period=vault_duration(cfg.raft.admin_token_period),
    )
    # The admin token and the keys make a break-glass root token (tools/raft_drills.py).
    outputs.update({Out.VAULT_NODES: raft.node_addresses, Out.VAULT_CA_CERT: raft.ca_cert_pem,
                    Out.VAULT_ROOT_TOKEN: bootstrap.root_token, Out.VAULT_UNSEAL_KEYS: bootstrap.unseal_keys,
                    Out.VAULT_ADMIN_TOKEN: bootstrap.admin_token})
    return _Vault(raft, VaultConnection(raft.host_address, bootstrap.admin_token, raft.ca_cert_pem), bootstrap)


def _configure(cfg: DevConfig, settings: VaultSettings, vault: _Vault, identity: DevIdentity,
               labels: dict[str, str]) -> tuple[VaultConfiguration, Optional[PostgresDocker]]:
    """Vault's configuration (after the identity provider, whose entities its roles name) and, for dynamic
    env vars out of the box, a PostgreSQL beside Vault with a role granted to alice by her `sub`."""
    postgres = PostgresDocker("postgres", PostgresDockerArgs(network_name=vault.cluster.network_name, labels=labels)) \
        if cfg.dev_database else None
    configuration = configure_vault(
        "vault", settings, vault.admin,
        adopt_kv_mount=cfg.vault_mode == "dev",
        manage_admin_policy=cfg.vault_mode == "dev",  # raft: the bootstrap wrote it
        autopilot_min_quorum=cfg.raft.replicas if cfg.vault_mode == "raft" else None,
        # Secret ids that never run out (docs/credentials-and-rollouts.md). Not bound to the cluster's
        # network (`cluster.network_cidrs`): the drills and the restore check log in from outside it, on a
        # restored copy of this Vault that carries the same binding.
        network_bound_cidrs=[],
        database=dev_database_args(settings.database, vault.admin, postgres, identity.demo_subjects)
        if postgres else None,
        opts=pulumi.ResourceOptions(depends_on=[identity]),
    )
    return configuration, postgres


def _snapshots(cfg: DevConfig, cluster: Cluster, bootstrap: VaultBootstrap, vault: VaultConfiguration,
               service: ServiceDocker, monitoring: Optional[MonitoringDocker],
               labels: dict[str, str]) -> dict[str, pulumi.Output]:
    """Raft mode: scheduled snapshots (to a bucket too, with the service's database, when `backup` is on)
    and the scheduled restore check of the bucket's newest backups; their outputs."""
    backup = cfg.backup
    store = None
    if backup.enabled:  # then the three secrets are set (BackupSettings.load)
        assert backup.access_key_id and backup.secret_access_key and backup.encryption_key  # noqa: S101
        store = SnapshotStoreArgs(
            image=service.image_id, bucket=backup.bucket, prefix=backup.prefix, endpoint=backup.endpoint,
            region=backup.region, ca_cert_pem=backup.ca_cert_pem, access_key_id=backup.access_key_id,
            secret_access_key=backup.secret_access_key, encryption_key=backup.encryption_key,
            tiers=backup.tiers, local_copy=backup.local_copy, network=backup.network,
            sqlite_volume=service.data_volume if backup.database else "")
    snapshots = VaultSnapshotsDocker("vault-snapshots", VaultSnapshotsDockerArgs(
        image=cfg.base_image, network_name=cluster.network_name, vault_address=cluster.internal_address,
        ca_cert_pem=cluster.ca_cert_pem, role_id=vault.snapshot_role_id, secret_id=vault.snapshot_secret_id,
        interval_seconds=cfg.raft.snapshot_interval, retain=cfg.raft.snapshot_retain, labels=labels,
        pushgateway_url=monitoring.pushgateway_url if monitoring else "",
        pushgateway_network=monitoring.network_name if monitoring else "",
        store=store,
    ), opts=pulumi.ResourceOptions(depends_on=[service]) if store else None)  # its database exists by then
    outputs: dict[str, pulumi.Output] = {Out.SNAPSHOT_VOLUME: snapshots.volume_name,
                                         Out.SNAPSHOT_ROLE_ID: vault.snapshot_role_id,
                                         Out.SNAPSHOT_SECRET_ID: vault.snapshot_secret_id}
    if store:
        outputs.update({Out.BACKUP_BUCKET: pulumi.Output.from_input(backup.bucket),
                        Out.BACKUP_PREFIX: pulumi.Output.from_input(backup.prefix)})
    if store and backup.restore_check:
        RestoreCheckDocker("restore-check", RestoreCheckDockerArgs(
            service_image=service.image_id, bao_image=cfg.vault_image, network_name=cluster.network_name,
            vault_address=cluster.internal_address, ca_cert_pem=cluster.ca_cert_pem,
            unseal_keys=bootstrap.unseal_keys, role_id=vault.executor_role_id, secret_id=vault.executor_secret_id,
            store=store, interval_seconds=backup.restore_check_interval, rpo_limit_seconds=backup.rpo_limit,
            pushgateway_url=monitoring.pushgateway_url if monitoring else "",
            pushgateway_network=monitoring.network_name if monitoring else "", labels=labels,
        ), opts=pulumi.ResourceOptions(depends_on=[snapshots]))
    return outputs


def _monitoring(cfg: DevConfig, cluster: Cluster, labels: dict[str, str]) -> Optional[MonitoringDocker]:
    """Prometheus scraping every Vault node (the one dev server, or each Raft node over TLS), the service
    and the Pushgateway; the Alertmanager routing to the stack's webhook."""
    mon = cfg.monitoring
    if not mon.enabled:
        return None
    raft = cfg.vault_mode == "raft"
    nodes = [f"vault-{i}:8200" for i in range(1, cfg.raft.replicas + 1)] if raft else ["vault:8200"]
    return MonitoringDocker("monitoring", MonitoringDockerArgs(
        image=mon.image, network_name=cluster.network_name,
        targets=ScrapeTargets(vault_nodes=nodes, vault_tls=raft, service=["envvars:8080"],
                              pushgateway="pushgateway:9091", alertmanager="alertmanager:9093"),
        vault_ca_pem=cluster.ca_cert_pem, routing=AlertRouting(webhook_url=mon.webhook_url),
        interval_seconds=mon.interval_seconds, retention=mon.retention,
        prometheus_host_port=mon.prometheus_host_port, alertmanager_host_port=mon.alertmanager_host_port,
        labels=labels))
