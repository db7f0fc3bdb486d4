"""The `prod` stack on Kubernetes: an HA Raft cluster (TLS everywhere), scheduled snapshots, and,
once the stack can reach the pods (`vaultEndpoints`), its bootstrap (root revoked) and configuration."""
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from infra.providers.tls import TlsBundle
from infra.providers.vault_bootstrap import VaultBootstrap
from infra.service_connection import ServiceConnection
from infra.service_k8s import ServiceKubernetes, ServiceKubernetesArgs
from infra.vault_configuration import config_admin_policy
from infra.vault_k8s import TransitSealArgs, VaultKubernetes, VaultKubernetesArgs
from infra.vault_snapshots_k8s import VaultSnapshotsKubernetes, VaultSnapshotsKubernetesArgs
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

    pods = [f"vault-{i}" for i in range(cfg.raft.replicas)]
    svc_names = ["vault", "vault-active", "vault-standby", "vault-internal"]
    if cfg.tls_secret_name:
        ca_pem = pulumi.Output.from_input(cfg.tls_ca_cert)
        tls_args = dict(tls_secret_name=cfg.tls_secret_name)
    else:
        tls = TlsBundle("vault-tls", common_name="vault", ip_addresses=["127.0.0.1"], dns_names=[
            "localhost",
            *[f"{s}.{cfg.namespace}.svc" for s in svc_names], *[f"{s}.{cfg.namespace}" for s in svc_names],
            *svc_names, *[f"{p}.vault-internal" for p in pods],
            *[f"{p}.vault-internal.{cfg.namespace}.svc" for p in pods],
        ])
        ca_pem = tls.ca_pem
        tls_args = dict(tls_ca_pem=tls.ca_pem, tls_cert_pem=tls.cert_pem, tls_key_pem=tls.key_pem)
    cluster = VaultKubernetes("vault", VaultKubernetesArgs(
        namespace=ns.metadata["name"], image=cfg.vault_image, replicas=cfg.raft.replicas, flavor=flavor, **tls_args,
        resources=cfg.resources, storage_class=cfg.storage_class or None,
        data_storage=cfg.data_storage, audit_storage=cfg.audit_storage,
        transit_seal=TransitSealArgs(**cfg.transit_seal) if cfg.transit_seal else None,
        client_namespaces=cfg.client_namespaces, skip_await=cfg.skip_await,
    ), opts=k8s_opts)
    outputs: dict[str, pulumi.Output] = {
        "namespace": ns.metadata["name"],
        "vault_internal_address": cluster.internal_address,
        "vault_ca_cert": ca_pem,
    }

    snapshot_args = dict(namespace=ns.metadata["name"], image=cfg.snapshot_image,
                         vault_address=cluster.internal_address, ca_cert_pem=ca_pem,
                         schedule=cfg.snapshot_schedule, retain=cfg.raft.snapshot_retain,
                         storage_class=cfg.storage_class or None, skip_await=cfg.skip_await)
    if settings is None:
        pulumi.log.info("vaultEndpoints is not set: Kubernetes objects only; bootstrap and configuration "
                        "run on the first `up` that can reach the pods")
        VaultSnapshotsKubernetes("vault-snapshots", VaultSnapshotsKubernetesArgs(**snapshot_args), opts=k8s_opts)
    else:
        bootstrap = VaultBootstrap(
            "vault-bootstrap", node_addresses=cfg.vault_endpoints, ca_cert_pem=ca_pem,
            admin_policy=config_admin_policy(settings.kv_path), key_shares=cfg.raft.key_shares,
            key_threshold=cfg.raft.key_threshold, revoke_root=True,
            opts=pulumi.ResourceOptions(depends_on=[cluster]))
        vault = configure_vault("vault", settings, address=cfg.vault_endpoints[0], token=bootstrap.admin_token,
                                ca_cert_pem=ca_pem, manage_admin_policy=False,
                                autopilot_min_quorum=cfg.raft.replicas)
        VaultSnapshotsKubernetes("vault-snapshots", VaultSnapshotsKubernetesArgs(
            **snapshot_args, role_id=vault.snapshot_role_id, secret_id=vault.snapshot_secret_id), opts=k8s_opts)
        outputs.update(vault_unseal_keys=bootstrap.unseal_keys, executor_role_id=vault.executor_role_id)
        if cfg.database_url is None or not cfg.service_jwks_url:
            pulumi.log.info("databaseUrl (secret) and serviceJwksUrl (or jwksUrl) are needed to deploy the service")
        else:
            public_url = f"{'https' if cfg.ingress_tls_secret else 'http'}://{cfg.ingress_host}" \
                if cfg.ingress_host else ""
            service = ServiceKubernetes("envvars", ServiceKubernetesArgs(
                namespace=ns.metadata["name"], image=cfg.service_image, connection=ServiceConnection(
                    vault_address=cluster.internal_address, vault_ca_pem=ca_pem, oidc_issuer=settings.issuer,
                    oidc_jwks_url=cfg.service_jwks_url, oidc_audience=settings.audiences[0],
                    role_id=vault.executor_role_id, secret_id=vault.executor_secret_id,
                    oidc_client_secret=cfg.oidc_client_secret or "", public_url=public_url),
                database_url=cfg.database_url, replicas=cfg.service_replicas, ingress_host=cfg.ingress_host,
                ingress_tls_secret=cfg.ingress_tls_secret, skip_await=cfg.skip_await,
            ), opts=k8s_opts)
            outputs.update(service_internal_url=service.internal_url, service_url=service.url)

    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
