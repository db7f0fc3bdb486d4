"""The PostgreSQL component (infra/postgres_k8s.py) with Pulumi mocks: the pod's security settings, the
password only as a secret (a Secret's data, a file in the pod, a secret URL), and each setting's effect."""
import os
import re

import pulumi
import pytest

from infra.postgres_k8s import DEFAULT_IMAGE, POSTGRES_UID, PostgresKubernetes, PostgresKubernetesArgs
from tests.unit.helpers import run

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")

pytestmark = pytest.mark.unit
MOCK_PASSWORD = "x" * 24  # what the mocks give a RandomSecret of length 24


def _pg(**overrides) -> PostgresKubernetes:
    args = dict(namespace="envvars", image=DEFAULT_IMAGE, storage_class="local-path")
    args.update(overrides)
    return PostgresKubernetes("db", PostgresKubernetesArgs(**args))


def _pod(mocks) -> dict:
    return mocks.named("db-sts").inputs["spec"]["template"]["spec"]


def test_one_hardened_pod_on_a_claim(mocks):
    run(_pg)
    spec = mocks.named("db-sts").inputs["spec"]
    assert spec["replicas"] == 1 and spec["serviceName"] == "postgres-headless"
    assert mocks.named("db-headless").inputs["spec"]["clusterIP"] == "None"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "local-path"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    pod = _pod(mocks)
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999,
                                      "fsGroupChangePolicy": "OnRootMismatch",
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    (c,) = pod["containers"]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["securityContext"] == {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}}
    assert c["readinessProbe"]["exec"]["command"][0] == c["startupProbe"]["exec"]["command"][0] == "pg_isready"
    assert "livenessProbe" not in c  # a restart would only cut a crash recovery short
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts == {"/var/lib/postgresql/data": "data", "/run/secrets/postgres": "password",
                      "/run/postgresql": "run", "/tmp": "tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["run"] and "emptyDir" in volumes["tmp"]
    assert volumes["password"]["secret"] == {"secretName": "postgres-credentials", "defaultMode": 0o440,
                                             "items": [{"key": "password", "path": "password"}]}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env == {"PGDATA": "/var/lib/postgresql/data/pgdata", "POSTGRES_DB": "envvars", "POSTGRES_USER": "envvars",
                   "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres/password",
                   "POSTGRES_CLIENT_CIDRS": "10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 fc00::/7"}
    svc = mocks.named("db-svc").inputs
    assert svc["spec"]["type"] == "ClusterIP" and svc["metadata"]["name"] == "postgres"
    assert svc["spec"]["selector"] == spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
    # Its pods are not the service's: the service's selector must not pick them.
    assert spec["selector"]["matchLabels"]["app.kubernetes.io/name"] != "envvars"


def test_only_the_service_pods_may_connect(mocks):
    run(_pg)
    policy = mocks.named("db-netpol").inputs["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"] == []  # it opens no connection
    assert policy["podSelector"]["matchLabels"] == mocks.named("db-sts").inputs["spec"]["selector"]["matchLabels"]
    (rule,) = policy["ingress"]
    assert rule == {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "envvars"}}}],
                    "ports": [{"protocol": "TCP", "port": 5432}]}


def test_the_password_is_only_a_secret(mocks):
    flags, values = {}, {}

    def program():
        pg = _pg()
        for key in ("database_url", "host"):
            out = getattr(pg, key)
            pulumi.Output.from_input(out.is_secret()).apply(lambda s, k=key: flags.__setitem__(k, s))
            out.apply(lambda v, k=key: values.__setitem__(k, v))

    run(program)
    assert flags == {"database_url": True, "host": False}
    assert values["database_url"] == f"postgresql+psycopg://envvars:{MOCK_PASSWORD}@postgres.envvars.svc:5432/envvars"
    assert values["host"] == "postgres.envvars.svc"
    secret = mocks.named("db-credentials")
    assert secret.inputs["stringData"] == {"password": MOCK_PASSWORD} and "stringData" in secret.secret_inputs
    for r in mocks.resources:
        if r.name not in ("db-credentials", "db-password"):
            assert MOCK_PASSWORD not in str(r.inputs), f"the password is in {r.name}'s inputs"


def test_settings_take_effect(mocks):
    run(lambda: _pg(storage_class=None, storage="5Gi", database="app", user="app_owner", client_namespace="web",
                    client_labels={"app": "web"}, client_cidrs=["10.244.0.0/16"], skip_await=True))
    sts = mocks.named("db-sts").inputs
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert "storageClassName" not in claim["spec"] and claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    env = {e["name"]: e["value"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["POSTGRES_DB"], env["POSTGRES_USER"], env["POSTGRES_CLIENT_CIDRS"]) == ("app", "app_owner",
                                                                                         "10.244.0.0/16")
    assert sts["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    (rule,) = mocks.named("db-netpol").inputs["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app": "web"}},
                             "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "web"}}}]


@pytest.mark.parametrize("bad", ["postgres", "Envvars", "env-vars", "1db", "", pytest.param("\u00e9nv", id="non-ascii")])
def test_names_must_be_plain(mocks, bad):
    with pytest.raises(ValueError, match="plain lower-case"):
        run(lambda: _pg(user=bad))


def test_the_default_image_and_uid_are_the_ones_images_sh_builds():
    with open(os.path.join(TOOLS, "images.sh")) as f:
        script = f.read()
    major = re.search(r"^PG_MAJOR=\$\{PG_MAJOR:-(\d+)\}", script, re.M).group(1)
    image = re.search(r"^PG_IMAGE=\$\{PG_IMAGE:-(\S+)\}", script, re.M).group(1)
    assert image.replace("$PG_MAJOR", major) == DEFAULT_IMAGE
    assert f"USER {POSTGRES_UID}:{POSTGRES_UID}" in script
    with open(os.path.join(TOOLS, "postgres", "install.sh")) as f:
        assert f"PG_UID={POSTGRES_UID}\n" in f.read()


@pytest.mark.parametrize("bad", ["10.0.0.1", "10.0.0.0/33", "10.0.0.0/8 trust", "any"])
def test_client_networks_must_be_networks(mocks, bad):
    with pytest.raises(ValueError):
        run(lambda: _pg(client_cidrs=[bad]))
