"""Failures of Vault and the database fail closed and leave nothing half-written; the docker and
kubernetes executor backends for real; the drift check."""
import hashlib
import json
import os
import re
import threading

import hvac
import pytest
from kubernetes import client as kclient
from kubernetes import config as kconfig
from sqlalchemy import update

from service.db import EnvVar
from service.drift import drift
from service.executor.base import JobSpec
from service.executor.docker_backend import DockerBackend
from service.executor.kubernetes_backend import KubernetesBackend
from stacks.config import DEFAULT_BASE_IMAGE
from tests.service.helpers import bearer, configured_vault, settings_for, wait_finished

pytestmark = pytest.mark.integration
API = "/api/v2/user/env-vars"


def _user_values(server, user) -> list:
    root = hvac.Client(url=server.address, token=server.token)
    try:
        return root.secrets.kv.v2.list_secrets(path=f"users/{user}", mount_point="secret")["data"]["keys"]
    except hvac.exceptions.InvalidPath:
        return []


def test_database_down_leaves_no_orphan_value(make_client, issuer, service_vault, postgres):
    server, _ = service_vault
    client = make_client(postgres.url)
    alice = bearer(issuer, "pg-down-alice")
    kept = client.post(API, json={"name": "KEPT", "value": "kept value"}, headers=alice).json()
    postgres.stop()
    try:
        r = client.post(API, json={"name": "NEW", "value": "never stored"}, headers=alice)
        assert r.status_code == 503 and "never stored" not in r.text
        assert client.get("/readyz").json()["database"] == "unreachable"
        run = client.post("/api/v2/execution", json={"command": ["true"], "env_var_ids": [kept["id"]]},
                          headers=alice)
        assert run.status_code == 503
    finally:
        postgres.start()
    assert _user_values(server, "pg-down-alice") == [kept["id"]]  # no orphan secret, the old value kept
    names = [e["name"] for e in client.get(API, headers=alice).json()["items"]]
    assert names == ["KEPT"]


@pytest.fixture
def fragile_vault(toolchain, pulumi_backend, issuer, tmp_path):
    """A Vault of this test only, so it can be sealed or stopped."""
    yield from configured_vault(toolchain, pulumi_backend, issuer, str(tmp_path / "fragile"), breakable=True)


def _client_on(server_outputs, issuer, tmp_path, database_url):
    from fastapi.testclient import TestClient

    from service.app import create_app

    server, outputs = server_outputs
    return TestClient(create_app(settings=settings_for(server, outputs, issuer, database_url, tmp_path)))


def test_vault_sealed_then_stopped_fails_closed(fragile_vault, issuer, tmp_path):
    server, _ = fragile_vault
    url = f"sqlite:///{tmp_path}/fragile.db"
    with _client_on(fragile_vault, issuer, tmp_path, url) as client:
        alice = bearer(issuer, "fragile-alice")
        ev = client.post(API, json={"name": "BEFORE", "value": "safe"}, headers=alice).json()
        root = hvac.Client(url=server.address, token=server.token)
        # Sealed for a moment (a pod replaced, an election): the service retries and the write lands.
        key = re.search(r"Unseal Key: (\S+)", open(os.path.join(tmp_path, "fragile", "server.log")).read())[1]
        root.sys.seal()
        threading.Timer(1.5, lambda: root.sys.submit_unseal_key(key)).start()
        r = client.post(API, json={"name": "RIDDEN", "value": "through"}, headers=alice)
        assert r.status_code == 201, r.text
        assert client.get(f"{API}/{r.json()['id']}", headers=alice).status_code == 200
        # Sealed for good: after the retries, a 503 and nothing written.
        root.sys.seal()
        r = client.post(API, json={"name": "DURING", "value": "lost?"}, headers=alice)
        assert r.status_code == 503 and "lost?" not in r.text
        assert client.put(f"{API}/{ev['id']}", json={"value": "changed?"}, headers=alice).status_code == 503
        assert client.delete(f"{API}/{ev['id']}", headers=alice).status_code == 503
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["vault"] == "sealed"
        run = client.post("/api/v2/execution", json={"command": ["true"], "env_var_ids": [ev["id"]]}, headers=alice)
        done = wait_finished(client, alice, run.json()["id"])
        assert done["status"] == "failed" and "BEFORE" in done["error"] and "did not start" in done["error"]
        server.stop()
        assert client.get("/readyz").json()["vault"] == "unreachable"
        assert client.post(API, json={"name": "AFTER", "value": "x"}, headers=alice).status_code == 503
        names = [e["name"] for e in client.get(API, headers=alice).json()["items"]]
        assert sorted(names) == ["BEFORE", "RIDDEN"]  # nothing half-written, nothing lost from the metadata


def test_drift_check_reports_both_directions(client, issuer, service_vault, tmp_path):
    server, outputs = service_vault
    alice = bearer(issuer, "drift-alice")
    ok = client.post(API, json={"name": "FINE", "value": "1"}, headers=alice).json()
    gone = client.post(API, json={"name": "GONE", "value": "2"}, headers=alice).json()
    root = hvac.Client(url=server.address, token=server.token)
    root.secrets.kv.v2.delete_metadata_and_all_versions(path=f"users/drift-alice/{gone['id']}", mount_point="secret")
    root.secrets.kv.v2.create_or_update_secret(path="users/drift-alice/stray", secret={"value": "x"},
                                               mount_point="secret")
    settings = client.app.state.components.settings
    report = drift(settings)
    assert f"drift-alice/{gone['id']}" in report["rows_without_value"]
    assert "drift-alice/stray" in report["values_without_row"]
    assert f"drift-alice/{ok['id']}" not in json.dumps(report)
    assert report["rows_with_another_vault_path"] == []
    # A row rewritten to point at another user's value: its value is not where its owner and id say.
    with client.app.state.components.sessions.begin() as s:
        s.execute(update(EnvVar).where(EnvVar.id == ok["id"]).values(vault_path="users/drift-bob/elsewhere"))
    assert drift(settings)["rows_with_another_vault_path"] == [f"drift-alice/{ok['id']}: users/drift-bob/elsewhere"]
    root.secrets.kv.v2.delete_metadata_and_all_versions(path="users/drift-alice/stray", mount_point="secret")


# Not the prod stack's jobs namespace, which its e2e test makes and deletes on the same API server (a
# namespace being deleted stays "terminating" there: no controller finishes it).
JOBS_NS = "backend-test-jobs"
VALUES = {"MULTI": "one\ntwo = 2\n", "UNICODE": "żółć ✓", "EQ": "k=v=w"}
PRINT = ("import hashlib,os\nfor k in sorted(os.environ):\n    print(k, hashlib.sha256(os.environb[k.encode()]).hexdigest())\n"
         "print(f'uid={os.getuid()}', 'caps=' + open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
         "m = open('/proc/self/mounts').read()\n"
         "print('mounts=' + ('ok' if 'docker.sock' not in m and 'podman.sock' not in m and '/run/envvars' not in m else m))")


def test_docker_backend_injects_byte_exact_and_removes_the_container(toolchain):
    import docker

    backend = DockerBackend(DEFAULT_BASE_IMAGE, toolchain["docker_host"])
    result = backend.run(JobSpec("dockertest1", ["python3", "-c", PRINT], dict(VALUES), 60), threading.Event())
    assert result.exit_code == 0, result.output
    out = result.output.decode()
    for k, v in VALUES.items():
        assert f"{k} {hashlib.sha256(v.encode()).hexdigest()}" in out
    assert "uid=200000" in out and "caps=0000000000000000" in out and "mounts=ok" in out, out
    engine = docker.DockerClient(base_url=toolchain["docker_host"])
    assert engine.containers.list(all=True, filters={"label": "vault-envvars.execution=dockertest1"}) == []


def test_kubernetes_backend_keeps_values_out_of_the_job_spec(kube_apiserver):
    api = kconfig.new_client_from_config(config_file=kube_apiserver.kubeconfig)
    core = kclient.CoreV1Api(api)
    try:
        core.create_namespace(kclient.V1Namespace(metadata=kclient.V1ObjectMeta(name=JOBS_NS)))
    except kclient.ApiException as e:
        assert e.status == 409
    backend = KubernetesBackend(JOBS_NS, "python:3.12-slim", api_client=api)
    name = backend.submit(JobSpec("k8stest1", ["python3", "-c", PRINT], dict(VALUES), 60))
    job = kclient.BatchV1Api(api).read_namespaced_job(name, JOBS_NS)
    spec_text = json.dumps(api.sanitize_for_serialization(job))
    for v in VALUES.values():
        assert json.dumps(v)[1:-1] not in spec_text
    pod = job.spec.template.spec
    assert pod.automount_service_account_token is False and pod.enable_service_links is False
    assert pod.security_context.run_as_non_root is True and pod.security_context.run_as_user != 0
    assert not (pod.host_network or pod.host_pid or pod.host_ipc) and all(v.secret is None for v in pod.volumes)
    (c,) = pod.containers
    assert c.env_from[0].secret_ref.name == name and c.security_context.read_only_root_filesystem is True
    assert c.security_context.capabilities.drop == ["ALL"] and c.security_context.allow_privilege_escalation is False
    assert job.spec.active_deadline_seconds == 60 and job.spec.backoff_limit == 0
    secret = core.read_namespaced_secret(name, JOBS_NS)
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == ("Job", name, job.metadata.uid) and secret.immutable is True
    import base64

    assert {k: base64.b64decode(v).decode() for k, v in secret.data.items()} == VALUES
    backend.delete(name)
    assert kclient.BatchV1Api(api).list_namespaced_job(JOBS_NS).items == []
    assert core.list_namespaced_secret(JOBS_NS, label_selector="vault-envvars.execution").items == []
