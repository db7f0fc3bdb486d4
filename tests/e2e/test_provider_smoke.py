"""One real `up`/`destroy` per provider through a throwaway stack: the effect is checked on the real
server, the real engine and the rendered files, and a second `up` must change nothing."""
import glob
import os
import secrets

import docker
import pytest
import requests
import yaml
from pulumi import automation as auto

from stacks.config import DEFAULT_BASE_IMAGE

pytestmark = pytest.mark.e2e


def test_vault_kv_v2_mount(throwaway_stack, bao_dev_server, vault_client):
    path = f"smoke-{secrets.token_hex(3)}"
    s = throwaway_stack("e2e/programs/vault_kv")
    s.stack.set_config("address", auto.ConfigValue(bao_dev_server.address))
    s.stack.set_config("token", auto.ConfigValue(bao_dev_server.token, secret=True))
    s.stack.set_config("path", auto.ConfigValue(path))

    s.up()
    mount = vault_client.sys.list_mounted_secrets_engines()["data"][f"{path}/"]
    assert mount["type"] == "kv" and mount["options"]["version"] == "2"
    assert mount["config"]["max_lease_ttl"] == 3600
    # The mount answers as KV v2: versioned write and read back.
    vault_client.secrets.kv.v2.create_or_update_secret(path="probe", secret={"k": "v"}, mount_point=path)
    assert vault_client.secrets.kv.v2.read_secret_version(
        path="probe", mount_point=path, raise_on_deleted_version=True)["data"]["data"] == {"k": "v"}

    assert s.changes_of_second_up() == {}
    # The token went in as a secret: the stored state and config hold only ciphertext.
    assert s.stored_text_contains(bao_dev_server.token) is False

    s.destroy()
    assert f"{path}/" not in vault_client.sys.list_mounted_secrets_engines()["data"]


def test_docker_container_over_http(throwaway_stack, toolchain):
    name = f"smoke-{secrets.token_hex(3)}"
    s = throwaway_stack("e2e/programs/docker_http")
    s.stack.set_config("name", auto.ConfigValue(name))
    s.stack.set_config("image", auto.ConfigValue(DEFAULT_BASE_IMAGE))

    url = s.up().outputs["url"].value
    r = requests.get(f"{url}/os-release", timeout=5)
    assert r.status_code == 200 and "bookworm" in r.text
    engine = docker.DockerClient(base_url=toolchain["docker_host"])
    assert engine.containers.get(name).attrs["Config"]["User"] == "65534:65534"

    assert s.changes_of_second_up() == {}

    s.destroy()
    flt = {"label": f"vault-envvars.test={name}"}
    assert engine.containers.list(all=True, filters=flt) == []
    assert engine.networks.list(filters=flt) == []
    assert engine.volumes.list(filters=flt) == []


def test_kubernetes_manifests_rendered(throwaway_stack, tmp_path):
    render_dir = tmp_path / "manifests"
    s = throwaway_stack("e2e/programs/k8s_render")
    s.stack.set_config("renderDir", auto.ConfigValue(str(render_dir)))

    s.up()
    docs = [yaml.safe_load(open(f)) for f in glob.glob(os.path.join(render_dir, "**", "*.yaml"), recursive=True)]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert kinds == {("ConfigMap", "smoke-settings"), ("Deployment", "smoke-web")}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2

    assert s.changes_of_second_up() == {}
