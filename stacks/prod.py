"""The `prod` stack on Kubernetes: an HA Raft cluster (TLS everywhere), its bootstrap (root revoked) and
configuration, scheduled snapshots, the service and its monitoring (Prometheus, Alertmanager, a Pushgateway),
in one `up` from an empty cluster. The stack reaches
the pods through the Kubernetes API server (infra/clients/kube_forward.py), or where `vaultEndpoints` says;
`bootstrap: false` (and `renderDir`) stop at the Kubernetes objects, for API servers without kubelets."""
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from infra.dev_identity import DevIdentity, DevIdentityArgs, issuer_url, jwks_url
from infra.kube_meta import POD_SECURITY_RESTRICTED
from infra.monitoring_config import AlertRouting
from infra.monitoring_k8s import MonitoringKubernetes, MonitoringKubernetesArgs
from infra.postgres_k8s import DEFAULT_IMAGE as POSTGRES_IMAGE
from infra.postgres_k8s import PostgresKubernetes, PostgresKubernetesArgs
from infra.providers.vault import VaultConnection
from infra.providers.vault_bootstrap import VaultBootstrap
from infra.providers.vault_token import TokenRenewal
from infra.service_k8s import ServiceKubernetes, ServiceKubernetesArgs
from infra.vault_configuration import VaultConfiguration
from infra.vault_k8s import API_PORT, VaultKubernetes, VaultKubernetesArgs, internal_address
from infra.vault_snapshots_docker import SnapshotStoreArgs
from infra.vault_snapshots_k8s import VaultSnapshotsKubernetes, VaultSnapshotsKubernetesArgs
from stacks import export
from stacks.config import ProdConfig, VaultSettings, vault_duration
from stacks.service import service_connection
from stacks.vault import admin_policy, configure_vault
from tools.lib.stack_outputs import Out


def deploy() -> dict[str, pulumi.Output]:
    cfg = ProdConfig.load()
    # devIdentity: Vault's own OIDC provider, named before the cluster exists. Vault reads its keys on
    # loopback in each pod; the service reaches the issuer through the active Service.
    internal = internal_address(cfg.namespace)
    local_issuer = {"jwks_url": jwks_url(f"https://127.0.0.1:{API_PORT}"), "issuer": issuer_url(internal)}
    settings: Optional[VaultSettings] = VaultSettings.load(
        default_key_source=local_issuer if cfg.dev_identity else None) if cfg.bootstrap else None
    flavor = settings.server_flavor if settings else VaultSettings.flavor_only()
    provider = k8s.Provider("k8s", kubeconfig=cfg.kubeconfig or None,
                            render_yaml_to_directory=cfg.render_dir or None)
    k8s_opts = pulumi.ResourceOptions(provider=provider)
    annotations = {"pulumi.com/skipAwait": "true"} if cfg.skip_await else {}
    # Vault, the service, PostgreSQL, the snapshots and (by default) the monitoring: every pod passes the
    # `restricted` Pod Security profile, which the API server enforces on the namespace.
    ns = k8s.core.v1.Namespace("vault-namespace", metadata={
        "name": cfg.namespace, "labels": {"app.kubernetes.io/part-of": "vault-envvars", **POD_SECURITY_RESTRICTED},
        "annotations": annotations}, opts=k8s_opts)
    namespace = ns.metadata["name"]

    cluster = VaultKubernetes("vault", VaultKubernetesArgs(
        namespace=namespace, image=cfg.vault_image, replicas=cfg.raft.replicas, flavor=flavor,
        tls_secret=cfg.tls_secret, resources=cfg.resources, storage_class=cfg.storage_class,
        data_storage=cfg.data_storage, audit_storage=cfg.audit_storage, seal=cfg.seal.args,
        generate_static_key=cfg.seal.generate_static_key,
        client_namespaces=cfg.client_namespaces, host_addresses=cfg.vault_endpoints, skip_await=cfg.skip_await,
        prometheus_namespace=_monitoring_namespace(cfg) if cfg.monitoring.enabled else "",
    ), opts=k8s_opts)
    outputs: dict[str, pulumi.Output] = {
        Out.NAMESPACE: namespace,
        Out.VAULT_INTERNAL_ADDRESS: cluster.internal_address,
        Out.VAULT_CA_CERT: cluster.ca_cert_pem,
    }

    vault: Optional[VaultConfiguration] = None
    if settings is None:
        pulumi.log.info("bootstrap is false: Kubernetes objects only, no bootstrap, configuration or service")
    else:
        bootstrap = VaultBootstrap(
            "vault-bootstrap", node_addresses=cluster.node_addresses, ca_cert_pem=cluster.ca_cert_pem,
            admin_policy=admin_policy(settings), key_shares=cfg.raft.key_shares,
            key_threshold=cfg.raft.key_threshold, revoke_root=True, seal_type=cfg.seal.kind,
            recovery_pgp_keys=cfg.seal.recovery_pgp_keys,
            admin_token_period=vault_duration(cfg.raft.admin_token_period),
            # The pods' addresses are names, not the cluster's objects' outputs: wait for those objects.
            opts=pulumi.ResourceOptions(depends_on=[cluster]))
        admin = VaultConnection(cluster.host_address, bootstrap.admin_token, cluster.ca_cert_pem)
        # Every preview/up renews it.
        TokenRenewal("vault-admin-token", connection=admin, token_name="config-admin",  # noqa: S106 (a name)
                     node_addresses=cluster.node_addresses)
        identity = DevIdentity("identity", DevIdentityArgs(
            connection=admin, issuer_base_url=internal,
            redirect_uris=[f"{cfg.service_public_url}/dashboard/callback"] if cfg.service_public_url else [],
        )) if cfg.dev_identity else None
        vault = configure_vault(
            "vault", settings, admin, manage_admin_policy=False, autopilot_min_quorum=cfg.raft.replicas,
            opts=pulumi.ResourceOptions(depends_on=[identity]) if identity else None)
        # The admin token and the keys make a break-glass root token (tools/raft_drills.py, tools/drill.py).
        outputs.update({Out.VAULT_NODES: cluster.node_addresses, Out.VAULT_ADMIN_TOKEN: bootstrap.admin_token,
                        Out.EXECUTOR_ROLE_ID: vault.executor_role_id,
                        Out.VAULT_SEAL: pulumi.Output.from_input(cfg.seal.kind), **_key_outputs(cfg, bootstrap)})
        if identity:
            outputs.update({Out.VAULT_ADDRESS: cluster.host_address, Out.JWT_ISSUER: identity.issuer,
                            Out.OIDC_CLIENT_ID: identity.client_id, Out.OIDC_CLIENT_SECRET: identity.client_secret,
                            Out.DEMO_USER_PASSWORDS: identity.demo_passwords})
        outputs.update(_service(cfg, settings, namespace, cluster, vault, identity, k8s_opts))

    monitoring = _monitoring(cfg, namespace, cluster, annotations, k8s_opts)
    if monitoring:
        outputs.update({Out.PROMETHEUS_URL: monitoring.prometheus_url, Out.ALERTMANAGER_URL: monitoring.alertmanager_url})
    # Without the bootstrap there is no AppRole: the CronJob's credential Secret comes with the configuration.
    VaultSnapshotsKubernetes("vault-snapshots", VaultSnapshotsKubernetesArgs(
        namespace=namespace, image=cfg.snapshot_image, vault_address=cluster.internal_address,
        ca_cert_pem=cluster.ca_cert_pem, schedule=cfg.snapshot_schedule, retain=cfg.raft.snapshot_retain,
        storage_class=cfg.storage_class, skip_await=cfg.skip_await,
        role_id=vault.snapshot_role_id if vault else None, secret_id=vault.snapshot_secret_id if vault else None,
        pushgateway_url=monitoring.pushgateway_url if monitoring else "",
        store=_snapshot_store(cfg),
    ), opts=k8s_opts)
    return export(outputs)


def _snapshot_store(cfg: ProdConfig) -> Optional[SnapshotStoreArgs]:
    """The bucket for the CronJob's snapshots; its image is the service's (boto3, cryptography)."""
    b = cfg.backup
    if not b.enabled:
        return None
    assert b.access_key_id and b.secret_access_key and b.encryption_key  # noqa: S101 (BackupSettings.load)
    return SnapshotStoreArgs(image=cfg.service_image, bucket=b.bucket, prefix=b.prefix, endpoint=b.endpoint,
                             region=b.region, ca_cert_pem=b.ca_cert_pem, access_key_id=b.access_key_id,
                             secret_access_key=b.secret_access_key, encryption_key=b.encryption_key, tiers=b.tiers,
                             local_copy=b.local_copy)


def _key_outputs(cfg: ProdConfig, bootstrap: VaultBootstrap) -> dict[str, pulumi.Output]:
    """Where the key shares are (docs/seals.md). Shamir: the unseal keys, a secret output. An auto seal: the
    recovery shares encrypted to their custodians (one per `recoveryPgpKeys` entry, in that order), or without
    custodians only where they are: in the bootstrap resource's state, never an output."""
    if not cfg.seal.auto:
        pulumi.log.warn("seal = shamir: a Vault pod restarted by anything (eviction, OOM, node upgrade) stays sealed "
                        "until someone runs `python tools/vault_unseal.py --stack <stack>` (or the next `up`); "
                        "set vault-envvars:seal to static or transit for pods that unseal themselves")
        return {Out.VAULT_UNSEAL_KEYS: bootstrap.unseal_keys}
    if cfg.seal.recovery_pgp_keys:
        return {Out.VAULT_RECOVERY_KEYS_PGP: pulumi.Output.unsecret(bootstrap.recovery_keys)}
    return {Out.VAULT_RECOVERY_KEYS_LOCATION: pulumi.Output.from_input(
        "not encrypted to custodians (no recoveryPgpKeys): in this stack's state only, the vault-bootstrap "
        "resource's recovery_keys (a Pulumi secret), which the tools read (tools/lib/seal_keys.py)")}


def _monitoring_namespace(cfg: ProdConfig) -> str:
    """The monitoring's namespace when it is not the Vault one ("" otherwise)."""
    ns = cfg.monitoring.namespace
    return ns if ns and ns != cfg.namespace else ""


def _monitoring(cfg: ProdConfig, namespace: pulumi.Output, cluster: VaultKubernetes, annotations: dict,
                k8s_opts: pulumi.ResourceOptions) -> Optional[MonitoringKubernetes]:
    """Prometheus scraping every Vault pod, each service replica and the Pushgateway; the Alertmanager
    routing to the stack's webhook. In the Vault namespace unless `monitoringNamespace` names another."""
    mon = cfg.monitoring
    if not mon.enabled:
        return None
    where: pulumi.Input[str] = namespace
    if _monitoring_namespace(cfg):
        where = k8s.core.v1.Namespace("monitoring-namespace", metadata={
            "name": mon.namespace, "labels": {"app.kubernetes.io/part-of": "vault-envvars", **POD_SECURITY_RESTRICTED},
            "annotations": annotations}, opts=k8s_opts).metadata["name"]
    return MonitoringKubernetes("monitoring", MonitoringKubernetesArgs(
        namespace=where, image=mon.image, vault_namespace=cfg.namespace,
        vault_pods=[f"vault-{i}" for i in range(cfg.raft.replicas)], vault_ca_pem=cluster.ca_cert_pem,
        routing=AlertRouting(webhook_url=mon.webhook_url), interval_seconds=mon.interval_seconds,
        retention=mon.retention, storage=mon.storage, storage_class=cfg.storage_class, skip_await=cfg.skip_await,
    ), opts=k8s_opts)


def _service(cfg: ProdConfig, settings: VaultSettings, namespace: pulumi.Output, cluster: VaultKubernetes,
             vault: VaultConfiguration, identity: Optional[DevIdentity],
             k8s_opts: pulumi.ResourceOptions) -> dict[str, pulumi.Output]:
    """The service, once the stack has its database and its users' key source; its outputs."""
    database_url = cfg.database_url
    if cfg.local_database:
        database_url = PostgresKubernetes("postgres", PostgresKubernetesArgs(
            namespace=namespace, image=POSTGRES_IMAGE, storage_class=cfg.storage_class, skip_await=cfg.skip_await),
            opts=k8s_opts).database_url
    internal = internal_address(cfg.namespace)
    jwks = jwks_url(internal) if identity else cfg.service_jwks_url
    if database_url is None or not jwks:
        pulumi.log.info("databaseUrl (secret) and serviceJwksUrl (or jwksUrl) are needed to deploy the service")
        return {}
    public_url = cfg.service_public_url or (
        f"{'https' if cfg.ingress_tls_secret else 'http'}://{cfg.ingress_host}" if cfg.ingress_host else "")
    connection, outputs = service_connection(
        settings, vault, vault_address=cluster.internal_address, vault_ca_pem=cluster.ca_cert_pem, jwks_url=jwks,
        identity=identity, webhook=cfg.platform_webhook, public_url=public_url,
        oidc_client_secret=cfg.oidc_client_secret or "")
    service = ServiceKubernetes("envvars", ServiceKubernetesArgs(
        namespace=namespace, image=cfg.service_image, connection=connection, database_url=database_url,
        replicas=cfg.service_replicas, ingress_host=cfg.ingress_host, ingress_tls_secret=cfg.ingress_tls_secret,
        job_image=cfg.job_image, jobs_namespace=cfg.jobs_namespace, node_port=cfg.service_node_port, skip_await=cfg.skip_await,
        secure_cookies=not cfg.local_plain_http, job_egress=cfg.job_egress, api_server_cidrs=cfg.api_server_cidrs,
    ), opts=k8s_opts)
    url = pulumi.Output.from_input(public_url) if public_url else service.url
    outputs.update({Out.SERVICE_INTERNAL_URL: service.internal_url, Out.SERVICE_URL: url,
                    Out.DASHBOARD_URL: url.apply(lambda u: f"{u}/dashboard/" if u else "")})
    return outputs
