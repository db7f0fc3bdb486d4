"""Changes roll out on the engine: an edited file of the image's build context rebuilds the image and
replaces the container running it (run by image id, never by a tag that could point elsewhere), the new
content served after `up`; a renewed file marked reloadable is written into the running container and
signalled, not a new container (how the Vault nodes take a renewed certificate)."""
import secrets

import docker
import pytest
import requests
from pulumi import automation as auto

from infra.clients import vault_ops
from stacks.config import DEFAULT_BASE_IMAGE

pytestmark = pytest.mark.e2e
DOCKERFILE = "ARG BASE\nFROM ${BASE}\nCOPY app.txt /srv/app.txt\n"


def _get(url: str) -> str:
    """The body at `url`, once the container's server answers (a new container takes a moment to listen)."""
    return vault_ops.wait_until(lambda: requests.get(url, timeout=5).text, 30, f"{url} to answer")


def test_a_changed_build_rolls_the_container_a_renewed_file_does_not(throwaway_stack, toolchain, tmp_path):
    name = f"rollout-{secrets.token_hex(3)}"
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "app.txt").write_text("version 1\n")
    s = throwaway_stack("e2e/programs/docker_rollout")
    for key, value in (("name", name), ("context", str(tmp_path)), ("base", DEFAULT_BASE_IMAGE),
                       ("renewed", "certificate 1")):
        s.stack.set_config(key, auto.ConfigValue(value))
    engine = docker.DockerClient(base_url=toolchain["docker_host"])
    try:
        first = {k: v.value for k, v in s.up().outputs.items()}
        assert _get(f"{first['url']}/app.txt") == "version 1\n"

        # The code changes: `up` builds a new image and the new container serves it.
        (tmp_path / "app.txt").write_text("version 2\n")
        second = {k: v.value for k, v in s.up().outputs.items()}
        assert second["image_id"] != first["image_id"] and second["container_id"] != first["container_id"]
        assert _get(f"{second['url']}/app.txt") == "version 2\n"
        assert engine.containers.get(name).attrs["Image"] == second["image_id"]

        # A renewed file: written into the same running container (not restarted), which gets the signal.
        started = engine.containers.get(name).attrs["State"]["StartedAt"]
        assert _get(f"{second['url']}/reloads") == "0"
        s.stack.set_config("renewed", auto.ConfigValue("certificate 2"))
        result = s.up()
        third = {k: v.value for k, v in result.outputs.items()}
        assert result.summary.resource_changes.get("update") == 1 and third["container_id"] == second["container_id"]
        assert _get(f"{third['url']}/data/renewed.txt") == "certificate 2"
        assert _get(f"{third['url']}/reloads") == "1"
        assert engine.containers.get(name).attrs["State"]["StartedAt"] == started
        assert s.changes_of_second_up() == {}
    finally:
        s.destroy()
        for image in engine.images.list(name=f"localhost/vault-envvars/rollout-test:{name}"):
            engine.images.remove(image.id, force=True)
