"""Stack composition and typed config, with Pulumi mocks."""
import pulumi
import pytest

from stacks import composition_for, deploy
from stacks.config import ConfigError, DevConfig, ProdConfig

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("stack,kind", [("dev", "dev"), ("dev-ci", "dev"), ("prod", "prod"), ("prod-eu-1", "prod")])
def test_stack_names_select_a_composition(stack, kind):
    assert composition_for(stack) == kind


def test_unknown_stack_name_is_a_clear_error():
    with pytest.raises(ConfigError, match="allowed: dev, prod"):
        composition_for("staging")


def test_dev_defaults(mocks):
    cfg = DevConfig.load()
    assert cfg.vault_mode == "dev"
    assert cfg.vault_host_port == 0
    assert cfg.vault_image.startswith("localhost/vault-envvars/openbao:")


@pytest.mark.parametrize(
    "mocks,message",
    [
        ({"vaultMode": "ha"}, r"vault-envvars:vaultMode = 'ha' is not allowed; allowed values: dev"),
        ({"vaultHostPort": "http"}, r"vault-envvars:vaultHostPort = 'http' is not a port number"),
        ({"vaultHostPort": "70000"}, r"vault-envvars:vaultHostPort = 70000 is out of range"),
        ({"vaultImage": " "}, r"vault-envvars:vaultImage must not be empty"),
    ],
    indirect=["mocks"],
)
def test_bad_dev_settings_name_the_key(mocks, message):
    with pytest.raises(ConfigError, match=message):
        DevConfig.load()


@pytest.mark.parametrize("mocks", [{"namespace": "vault-prod", "renderDir": "/tmp/out"}], indirect=True)
def test_prod_settings(mocks):
    assert ProdConfig.load() == ProdConfig(namespace="vault-prod", render_dir="/tmp/out")


@pulumi.runtime.test
def test_dev_stack_composes_vault_and_exports_only_what_a_user_needs(mocks):
    outputs = deploy("dev")
    assert sorted(outputs) == ["vault_address", "vault_root_token"]

    def check(values):
        address, _token = values
        assert address == "http://127.0.0.1:49152"
        types = sorted(r.typ.split(":")[-1] for r in mocks.resources)
        assert types == ["Container", "Network", "RandomSecret", "VaultDevServer"]

    return pulumi.Output.all(outputs["vault_address"], outputs["vault_root_token"]).apply(check)


@pulumi.runtime.test
def test_dev_stack_root_token_is_exported_as_secret(mocks):
    outputs = deploy("dev")
    return pulumi.Output.from_input(
        outputs["vault_root_token"].is_secret()).apply(lambda s: assert_true(s))


def assert_true(value):
    assert value is True
