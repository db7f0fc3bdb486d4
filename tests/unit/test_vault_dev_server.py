"""VaultDevServer with Pulumi mocks: secure container defaults and the outputs a consumer needs."""
import pulumi
import pytest

from infra.server_paths import AUDIT_LOG
from infra.vault_dev_server import VaultDevServer, VaultDevServerArgs
from tests.unit.helpers import run

pytestmark = pytest.mark.unit


def _server(**overrides) -> VaultDevServer:
    args = dict(image="localhost/vault-envvars/openbao:2.7.2", root_token="dev-token", labels={"l": "v"})
    args.update(overrides)
    return VaultDevServer("vault", VaultDevServerArgs(**args))


def test_container_defaults_are_locked_down(mocks):
    run(_server)
    (c,) = mocks.of_type("docker:Container")
    i = c.inputs
    assert i["read_only"] is True
    assert i["cap_drop"] == ["ALL"]
    assert i["security_opt"] == ["no-new-privileges"]
    assert i["init"] is True
    assert i["tmpfs"] == {"/tmp": "rw,size=16m"}
    # Published on loopback only (the provider's default host_ip), engine-chosen port by default.
    assert i["ports"] == [{"internal": 8200, "external": 0}]
    assert i["labels"] == {"l": "v"}
    (n,) = mocks.of_type("docker:Network")
    assert i["networks"] == [{"name": n.inputs["name"], "aliases": ["vault"]}]
    (v,) = mocks.of_type("docker:Volume")
    assert i["volumes"] == [{"source": v.inputs["name"], "target": "/bao/logs"}]


def test_openbao_declares_two_audit_devices_in_its_config(mocks):
    run(_server)
    (c,) = mocks.of_type("docker:Container")
    assert c.inputs["entrypoint"] == ["/bin/sh", "-c"]
    script = c.inputs["command"][0]
    assert f'file_path = "{AUDIT_LOG}"' in script and 'file_path = "stdout"' in script
    assert script.rstrip().endswith("-config=/tmp/audit.hcl")
    assert "-dev " in script


def test_hashicorp_vault_flavor_runs_the_image_entrypoint(mocks):
    run(lambda: _server(flavor="vault", image="hashicorp/vault:1.18"))
    (c,) = mocks.of_type("docker:Container")
    assert c.inputs["entrypoint"] == []
    assert c.inputs["command"][:2] == ["server", "-dev"]


def test_children_hang_under_the_component(mocks):
    urns = []
    run(lambda: pulumi.Output.all(*[r.urn for r in (_server().container,)]).apply(urns.extend))
    assert urns and all("vault-envvars:infra:VaultDevServer$" in u for u in urns)


def test_host_address_follows_the_published_port(mocks):
    seen = []
    run(lambda: _server(host_port=18200).host_address.apply(seen.append))
    assert seen == ["http://127.0.0.1:18200"]


def test_root_token_output_is_secret(mocks):
    seen = []
    run(lambda: pulumi.Output.from_input(_server().root_token.is_secret()).apply(seen.append))
    assert seen == [True]
