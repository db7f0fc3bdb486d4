"""VaultDevServer with Pulumi mocks: secure container defaults and the outputs a consumer needs."""
import pulumi
import pytest

from infra.vault_dev_server import VaultDevServer, VaultDevServerArgs

pytestmark = pytest.mark.unit


def _server(**overrides) -> VaultDevServer:
    args = dict(image="localhost/vault-envvars/openbao:2.7.2", root_token="dev-token", labels={"l": "v"})
    args.update(overrides)
    return VaultDevServer("vault", VaultDevServerArgs(**args))


@pulumi.runtime.test
def test_container_defaults_are_locked_down(mocks):
    server = _server()

    def check(_):
        (c,) = mocks.of_type("docker:Container")
        i = c.inputs
        assert i["read_only"] is True
        assert i["cap_drop"] == ["ALL"]
        assert i["security_opt"] == ["no-new-privileges"]
        assert i["init"] is True
        # Published on loopback only, engine-chosen port by default.
        assert i["ports"] == [{"internal": 8200, "external": 0}]
        assert "host_ip" not in i["ports"][0]  # provider default is 127.0.0.1
        assert i["command"][:2] == ["server", "-dev"]
        assert i["labels"] == {"l": "v"}
        (n,) = mocks.of_type("docker:Network")
        assert i["networks"][0]["name"] == n.inputs["name"]

    return server.address.apply(check)


@pulumi.runtime.test
def test_children_hang_under_the_component(mocks):
    server = _server()

    def check(urns):
        for urn in urns:
            assert "vault-envvars:infra:VaultDevServer$" in urn

    return pulumi.Output.all(server.container.urn, server.network.urn).apply(check)


@pulumi.runtime.test
def test_address_follows_the_published_port(mocks):
    server = _server(host_port=18200)
    return server.address.apply(lambda a: assert_equal(a, "http://127.0.0.1:18200"))


@pulumi.runtime.test
def test_root_token_output_is_secret(mocks):
    server = _server()

    def check(is_secret):
        assert is_secret

    return pulumi.Output.from_input(server.root_token.is_secret()).apply(check)


def assert_equal(a, b):
    assert a == b
