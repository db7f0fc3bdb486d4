"""The `existing` composition's Vault resources carry what resolves their failures, in its settings' names,
and a provider's failure gives Vault's words followed by that hint (Pulumi mocks; no server)."""
import hvac
import pytest
import requests

from infra.providers.vault import VaultSettingError, explained
from stacks import deploy
from tests.unit.helpers import run

pytestmark = pytest.mark.unit

EXISTING = {"vaultAddress": "http://127.0.0.1:8200", "vaultToken": "root-token-canary",
            "jwksUrl": "https://idp.example/keys", "jwtIssuer": "https://idp.example"}


@pytest.mark.parametrize("mocks", [EXISTING], indirect=True)
def test_existing_stack_names_the_settings_that_resolve_each_failure(mocks):
    run(lambda: deploy("existing"))
    kv = mocks.named("vault-kv").inputs["hints"]
    assert "vault-envvars:adoptKvMount" in kv["in_use"] and "vault-envvars:kvPath" in kv["in_use"]
    assert "vault-envvars:jwksUrl" in mocks.named("vault-jwt-config").inputs["hints"]["rejected"]
    for r in mocks.of_type("vault:Mount") + mocks.of_type("vault:Endpoint") + mocks.of_type("vault:AppRoleCredential"):
        hints = r.inputs["hints"]
        assert "vault-envvars:vaultAddress" in hints["unreachable"], r.name
        assert "vault-envvars:vaultCaCert" in hints["tls"] and "vault-envvars:vaultToken" in hints["forbidden"]
        assert "root-token-canary" not in str(hints)


@pytest.mark.parametrize("mocks", [{**EXISTING, "adoptKvMount": "true"}], indirect=True)
def test_an_adopting_stack_points_at_kv_path_only(mocks):
    run(lambda: deploy("existing"))
    hint = mocks.named("vault-kv").inputs["hints"]["in_use"]
    assert "KV v2 mount only" in hint and "vault-envvars:kvPath" in hint


def test_stacks_that_make_their_own_vault_give_no_hints(mocks):
    run(lambda: deploy("dev"))
    assert not [r.name for r in mocks.resources if r.typ.startswith("vault:") and "hints" in r.inputs]


class _Provider:
    def __init__(self, err: Exception):
        self.err = err

    @explained
    def create(self, props):
        raise self.err


HINTS = {"hints": {"in_use": "set vault-envvars:adoptKvMount true", "unreachable": "check vault-envvars:vaultAddress",
                   "tls": "set vault-envvars:vaultCaCert", "forbidden": "vault-envvars:vaultToken may not"}}


@pytest.mark.parametrize("err,hint", [
    (hvac.exceptions.InvalidRequest("path is already in use at secret/"), "adoptKvMount"),
    (requests.exceptions.ConnectionError("Connection refused"), "vaultAddress"),
    (requests.exceptions.SSLError("certificate verify failed"), "vaultCaCert"),
    (hvac.exceptions.Forbidden("permission denied"), "vaultToken"),
])
def test_a_failure_gives_vaults_words_then_the_setting(err, hint):
    with pytest.raises(VaultSettingError) as caught:
        _Provider(err).create(HINTS)
    text = str(caught.value)
    assert text.startswith(str(err)) and hint in text.split("->", 1)[1]


def test_without_a_hint_the_failure_is_vaults_own():
    err = hvac.exceptions.InvalidRequest("path is already in use at secret/")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        _Provider(err).create({})
    with pytest.raises(hvac.exceptions.InternalServerError):  # a kind no setting resolves
        _Provider(hvac.exceptions.InternalServerError("boom")).create(HINTS)
