"""infra/service_k8s.py with stand-in credentials, on the test API server (pods never run there)."""
import pulumi
import pulumi_kubernetes as k8s

from infra.job_egress import JobEgressRule
from infra.service_connection import ServiceConnection
from infra.service_k8s import ServiceKubernetes, ServiceKubernetesArgs

cfg = pulumi.Config("target")
provider = k8s.Provider("k8s", kubeconfig=cfg.require("kubeconfig"))
ns = k8s.core.v1.Namespace("ns", metadata={"name": "envvars-e2e", "annotations": {"pulumi.com/skipAwait": "true"}},
                           opts=pulumi.ResourceOptions(provider=provider))
ServiceKubernetes("envvars", ServiceKubernetesArgs(
    namespace=ns.metadata["name"], image="registry.example/envvars:1", connection=ServiceConnection(
        vault_address="https://vault-active.vault.svc:8200", vault_ca_pem="CA", oidc_issuer="https://idp.example",
        oidc_jwks_url="https://idp.example/keys", oidc_audience="env-vars", role_id="role-id-1",
        secret_id=cfg.require_secret("secretId"), public_url="https://envvars.example"),
    database_url=cfg.require_secret("databaseUrl"), ingress_host="envvars.example", ingress_tls_secret="envvars-tls",
    skip_await=True, job_egress=[JobEgressRule(cidr="0.0.0.0/0", ports=(443,))],
), opts=pulumi.ResourceOptions(provider=provider))
