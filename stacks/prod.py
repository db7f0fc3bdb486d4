"""The `prod` stack on Kubernetes: an HA Raft cluster (TLS everywhere), scheduled snapshots, and,
once the stack can reach the pods (`vaultEndpoints`), its bootstrap (root revoked) and configuration."""
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from infra.providers.vault import VaultConnection
from infra.providers.vault_bootstrap import VaultBootstrap
from infra.service_connection import ServiceConnection
from infra.service_k8s import ServiceKubernetes, ServiceKubernetesArgs
from infra.vault_configuration import VaultConfiguration, config_admin_policy
from infra.vault_k8s import VaultKubernetes, VaultKubernetesArgs
from infra.vault_snapshots_k8s import VaultSnapshotsKubernetes, VaultSnapshotsKubernetesArgs
from stacks import export
from stacks.config import ProdConfig, VaultSettings
from stacks.vault import configure_vault


def deploy() -> dict[str, pulumi.Output]:
    cfg = ProdConfig.load()
    settings: Optional[VaultSettings] = VaultSettings.load() if cfg.vault_endpoints else None
    flavor = settings.server_flavor if settings else VaultSettings.flavor_only()
    provider = k8s.Provider("k8s", kubeconfig=cfg.kubeconfig or None,
                            render_yaml_to_directory=cfg.render_dir or None)
    k8s_opts = pulumi.ResourceOptions(provider=provider)
    annotations = {"pulumi.com/skipAwait": "true"} if cfg.skip_await else {}
    ns = k8s.core.v1.Namespace("vault-namespace", metadata={
        "name": cfg.namespace, "labels": {"app.kubernetes.io/part-of": "vault-envvars"},
        "annotations": annotations}, opts=k8s_opts)
    namespace = ns.metadata["name"]

    cluster = VaultKubernetes("vault", VaultKubernetesArgs(
        namespace=namespace, image=cfg.vault_image, replicas=cfg.raft.replicas, flavor=flavor,
        tls_secret=cfg.tls_secret, resources=cfg.resources, storage_class=cfg.storage_class,
        data_storage=cfg.data_storage, audit_storage=cfg.audit_storage, transit_seal=cfg.transit_seal,
        client_namespaces=cfg.client_namespaces, host_addresses=cfg.vault_endpoints, skip_await=cfg.skip_await,
    ), opts=k8s_opts)
    outputs: dict[str, pulumi.Output] = {
        "namespace": namespace,
        "vault_internal_address": cluster.internal_address,
        "vault_ca_cert": cluster.ca_cert_pem,
    }

    vault: Optional[VaultConfiguration] = None
    if settings is None:
        pulumi.log.info("vaultEndpoints is not set: Kubernetes objects only; bootstrap and configuration "
                        "run on the first `up` that can reach the pods")
    else:
        bootstrap = VaultBootstrap(
            "vault-bootstrap", node_addresses=cluster.node_addresses, ca_cert_pem=cluster.ca_cert_pem,
            admin_policy=config_admin_policy(settings.kv_path), key_shares=cfg.raft.key_shares,
            key_threshold=cfg.raft.key_threshold, revoke_root=True,
            # The pods' addresses come from the stack's config, not from the cluster's objects: wait for those.
            opts=pulumi.ResourceOptions(depends_on=[cluster]))
        vault = configure_vault("vault", settings,
                                VaultConnection(cluster.host_address, bootstrap.admin_token, cluster.ca_cert_pem),
                                manage_admin_policy=False, autopilot_min_quorum=cfg.raft.replicas)
        outputs.update(vault_unseal_keys=bootstrap.unseal_keys, executor_role_id=vault.executor_role_id)
        outputs.update(_service(cfg, settings, namespace, cluster, vault, k8s_opts))

    # The first phase has no AppRole yet: the CronJob's credential Secret comes with the configuration.
    VaultSnapshotsKubernetes("vault-snapshots", VaultSnapshotsKubernetesArgs(
        namespace=namespace, image=cfg.snapshot_image, vault_address=cluster.internal_address,
        ca_cert_pem=cluster.ca_cert_pem, schedule=cfg.snapshot_schedule, retain=cfg.raft.snapshot_retain,
        storage_class=cfg.storage_class, skip_await=cfg.skip_await,
        role_id=vault.snapshot_role_id if vault else None, secret_id=vault.snapshot_secret_id if vault else None,
    ), opts=k8s_opts)
    return export(outputs)


def _service(cfg: ProdConfig, settings: VaultSettings, namespace: pulumi.Output, cluster: VaultKubernetes,
             vault: VaultConfiguration, k8s_opts: pulumi.ResourceOptions) -> dict[str, pulumi.Output]:
    """The service, once the stack has its database and its users' key source; its outputs."""
    if cfg.database_url is None or not cfg.service_jwks_url:
        pulumi.log.info("databaseUrl (secret) and serviceJwksUrl (or jwksUrl) are needed to deploy the service")
        return {}
    public_url = f"{'https' if cfg.ingress_tls_secret else 'http'}://{cfg.ingress_host}" if cfg.ingress_host else ""
    service = ServiceKubernetes("envvars", ServiceKubernetesArgs(
        namespace=namespace, image=cfg.service_image, connection=ServiceConnection(
            vault_address=cluster.internal_address, vault_ca_pem=cluster.ca_cert_pem, oidc_issuer=settings.issuer,
            oidc_jwks_url=cfg.service_jwks_url, oidc_audience=settings.audiences[0],
            role_id=vault.executor_role_id, secret_id=vault.executor_secret_id,
            oidc_client_secret=cfg.oidc_client_secret or "", public_url=public_url),
        database_url=cfg.database_url, replicas=cfg.service_replicas, ingress_host=cfg.ingress_host,
        ingress_tls_secret=cfg.ingress_tls_secret, skip_await=cfg.skip_await,
    ), opts=k8s_opts)
    return {"service_internal_url": service.internal_url, "service_url": service.url}
