"""infra/postgres_k8s.py on the test API server (pods never run there): its objects as the API stores them."""
import pulumi
import pulumi_kubernetes as k8s

from infra.postgres_k8s import DEFAULT_IMAGE, PostgresKubernetes, PostgresKubernetesArgs

cfg = pulumi.Config("target")
provider = k8s.Provider("k8s", kubeconfig=cfg.require("kubeconfig"))
ns = k8s.core.v1.Namespace("ns", metadata={"name": "envvars-pg-e2e", "annotations": {"pulumi.com/skipAwait": "true"}},
                           opts=pulumi.ResourceOptions(provider=provider))
pg = PostgresKubernetes("db", PostgresKubernetesArgs(namespace=ns.metadata["name"], image=DEFAULT_IMAGE,
                                                     storage_class="local-path", skip_await=True),
                        opts=pulumi.ResourceOptions(provider=provider))
pulumi.export("database_url", pg.database_url)
pulumi.export("host", pg.host)
