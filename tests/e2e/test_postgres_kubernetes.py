"""The PostgreSQL component (infra/postgres_k8s.py) by a real `pulumi up` on the real kube-apiserver, read
back: the API accepts every field of the hardened pod, the password is only in the Secret and the secret
output, never in the StatefulSet or the state's plain text."""
import base64
import json
from urllib.parse import urlsplit

import pytest
from kubernetes import client as kclient
from kubernetes import config as kconfig
from pulumi import automation as auto

from devkit.stacks import ThrowawayStack

pytestmark = pytest.mark.e2e
NS = "envvars-pg-e2e"


def test_postgres_on_kubernetes(pulumi_backend, kube_apiserver):
    s = ThrowawayStack("e2e/programs/postgres_k8s", dict(pulumi_backend))
    s.stack.set_config("target:kubeconfig", auto.ConfigValue(kube_apiserver.kubeconfig))
    try:
        outputs = s.up().outputs
        assert outputs["database_url"].secret and not outputs["host"].secret
        url = urlsplit(outputs["database_url"].value)
        assert (url.scheme, url.username, url.hostname, url.port, url.path) == (
            "postgresql+psycopg", "envvars", f"postgres.{NS}.svc", 5432, "/envvars")
        password = url.password
        assert password and len(password) >= 32
        api = kconfig.new_client_from_config(config_file=kube_apiserver.kubeconfig)
        sts = kclient.AppsV1Api(api).read_namespaced_stateful_set("postgres", NS)
        pod = sts.spec.template.spec
        assert sts.spec.replicas == 1 and pod.automount_service_account_token is False
        assert (pod.security_context.run_as_user, pod.security_context.fs_group, pod.security_context.run_as_non_root,
                pod.security_context.seccomp_profile.type) == (999, 999, True, "RuntimeDefault")
        (c,) = pod.containers
        assert c.security_context.read_only_root_filesystem is True and c.security_context.capabilities.drop == ["ALL"]
        assert c.readiness_probe._exec.command[0] == "pg_isready" and c.image_pull_policy == "IfNotPresent"
        (claim,) = sts.spec.volume_claim_templates
        assert claim.spec.storage_class_name == "local-path"
        assert password not in json.dumps(api.sanitize_for_serialization(sts))
        secret = kclient.CoreV1Api(api).read_namespaced_secret("postgres-credentials", NS)
        assert base64.b64decode(secret.data["password"]).decode() == password
        svc = kclient.CoreV1Api(api).read_namespaced_service("postgres", NS).spec
        assert svc.type == "ClusterIP" and [p.port for p in svc.ports] == [5432]
        policy = kclient.NetworkingV1Api(api).read_namespaced_network_policy("postgres", NS).spec
        assert policy.ingress[0]._from[0].pod_selector.match_labels == {"app.kubernetes.io/name": "envvars"}
        assert not s.stored_text_contains(password)
    finally:
        s.destroy()
