"""VaultConfiguration with Pulumi mocks: every resource and every secure default."""
import pulumi
import pytest

from infra.policies import POLICY_NAMES, render_policy
from infra.providers.vault import VaultConnection
from infra.vault_configuration import (
    SERVICE_LOGIN_AUDIENCE,
    SERVICE_LOGIN_ISSUER,
    AppRoleArgs,
    JwtAuthArgs,
    VaultConfiguration,
    VaultConfigurationArgs,
)
from service.settings import Settings
from service.vault import login as vault_login
from tests.unit.helpers import run

pytestmark = pytest.mark.unit


def _config(**overrides) -> VaultConfiguration:
    args = dict(connection=VaultConnection("https://vault.example:8200", "admin-token", "CA PEM"))
    args.update(overrides)
    return VaultConfiguration("vault", VaultConfigurationArgs(**args))


def test_kv_v2_with_bounded_versions(mocks):
    run(lambda: _config())
    kv = mocks.named("vault-kv").inputs
    assert (kv["kind"], kv["type"], kv["path"], kv["options"]) == ("secret", "kv", "secret", {"version": "2"})
    assert (kv["default_lease_ttl"], kv["max_lease_ttl"]) == ("1h", "24h")
    cfg = mocks.named("vault-kv-config").inputs
    assert cfg["path"] == "secret/config" and cfg["data"]["max_versions"] == 10


def test_executor_approle_defaults(mocks):
    run(lambda: _config())
    mount = mocks.named("vault-approle").inputs
    assert (mount["kind"], mount["type"]) == ("auth", "approle")
    assert mount["user_lockout"] == {"lockout_threshold": "5", "lockout_duration": "15m",
                                     "lockout_counter_reset": "15m"}
    role = mocks.named("vault-executor-role").inputs
    assert role["path"] == "auth/approle/role/executor"
    assert role["data"] == {
        "token_policies": ["executor"], "token_ttl": 1200, "token_max_ttl": 3600, "token_type": "service",
        "bind_secret_id": True, "secret_id_ttl": 30 * 86400, "secret_id_num_uses": 1000,
        "secret_id_bound_cidrs": [], "token_bound_cidrs": [],
    }


def test_cidr_binding_reaches_token_and_secret_id(mocks):
    run(lambda: _config(approle=AppRoleArgs(bound_cidrs=["10.1.0.0/16"])))
    data = mocks.named("vault-executor-role").inputs["data"]
    assert data["secret_id_bound_cidrs"] == data["token_bound_cidrs"] == ["10.1.0.0/16"]


def test_users_log_in_only_with_the_service_login_key(mocks):
    """Vault trusts one key, the service's (generated here, a secret output), for one issuer, audience and
    algorithm: no identity provider's token logs in at the user role."""
    secret = {}

    def program():
        config = _config()
        pulumi.Output.from_input(config.service_login_key.is_secret()).apply(lambda v: secret.setdefault("key", v))

    run(program)
    assert secret == {"key": True}
    cfg = mocks.named("vault-jwt-config").inputs
    assert cfg["path"] == "auth/jwt/config"
    assert cfg["data"] == {"jwt_validation_pubkeys": ["SIGNING-PUBLIC-PEM"], "bound_issuer": SERVICE_LOGIN_ISSUER,
                           "jwt_supported_algs": ["ES256"], "default_role": "user"}
    role = mocks.named("vault-user-role").inputs["data"]
    assert role["role_type"] == "jwt" and role["user_claim"] == "sub"
    assert role["bound_audiences"] == [SERVICE_LOGIN_AUDIENCE] and role["token_policies"] == ["user"]
    assert (role["token_ttl"], role["token_max_ttl"]) == (900, 3600)
    assert role["expiration_leeway"] == role["not_before_leeway"] == role["clock_skew_leeway"] == 30


def test_the_service_names_what_vault_binds():
    """The service's defaults (it does not import infra/) are the names Vault's user role binds."""
    s = Settings(vault_addr="-", oidc_issuer="-", oidc_audience="-", oidc_jwks_url="-")
    assert (s.vault_login_issuer, s.vault_login_audience) == (SERVICE_LOGIN_ISSUER, SERVICE_LOGIN_AUDIENCE)
    assert (vault_login.ISSUER, vault_login.AUDIENCE) == (SERVICE_LOGIN_ISSUER, SERVICE_LOGIN_AUDIENCE)


def test_policies_are_the_rendered_files(mocks):
    run(lambda: _config())
    for name in POLICY_NAMES:
        ep = mocks.named(f"vault-policy-{name}").inputs
        assert ep["path"] == f"sys/policies/acl/{name}"
        assert "${" not in ep["data"]["policy"]
    user = mocks.named("vault-policy-user").inputs["data"]["policy"]
    assert 'path "secret/data/users/{{identity.entity.aliases.auth_jwt_mock.name}}/*"' in user


def test_a_policy_with_an_unfilled_placeholder_is_an_error():
    with pytest.raises(ValueError, match="jwt_accessor"):
        render_policy("user", kv_path="secret")


def test_audit_devices_only_through_the_api_for_hashicorp_vault(mocks):
    run(lambda: _config())
    assert mocks.of_type("vault:AuditDevice") == []


def test_two_audit_devices_for_hashicorp_vault(mocks):
    run(lambda: _config(audit_via_api=True, audit_file_path="/var/log/vault/audit.log"))
    devices = {r.inputs["path"]: r.inputs for r in mocks.of_type("vault:AuditDevice")}
    assert sorted(devices) == ["file", "stdout"]
    assert devices["file"]["options"] == {"file_path": "/var/log/vault/audit.log", "mode": "0600"}
    assert "log_raw" not in devices["file"]["options"]


@pulumi.runtime.test
def test_executor_secret_id_output_is_secret(mocks):
    config = _config()
    return pulumi.Output.from_input(config.executor_secret_id.is_secret()).apply(lambda s: _assert(s is True))


@pytest.mark.parametrize("audit_via_api", [False, True])
def test_connection_token_is_secret_on_every_resource(mocks, audit_via_api):
    run(lambda: _config(audit_via_api=audit_via_api, autopilot_min_quorum=3))
    vault_resources = [r for r in mocks.resources if "dynamic/vault:" in r.typ]
    assert {r.typ.rsplit(":", 1)[-1] for r in vault_resources} == \
        {"Mount", "Endpoint", "AppRoleCredential", *(["AuditDevice"] if audit_via_api else [])}
    for r in vault_resources:
        # The providers' input names are in existing stacks' state: they stay address, token, ca_cert_pem.
        assert (r.inputs["address"], r.inputs["token"], r.inputs["ca_cert_pem"]) == \
            ("https://vault.example:8200", "admin-token", "CA PEM"), r.name
        assert r.secret_inputs & {"address", "token", "ca_cert_pem"} == {"token"}, r.name


def _assert(condition):
    assert condition


def test_snapshot_operator_approle(mocks):
    run(lambda: _config())
    role = mocks.named("vault-snapshot-operator-role").inputs
    assert role["path"] == "auth/approle/role/snapshot-operator"
    assert role["data"]["token_policies"] == ["snapshot-operator"]
    assert (role["data"]["token_ttl"], role["data"]["token_max_ttl"]) == (600, 1800)
    cred = mocks.named("vault-snapshot-operator-credential").inputs
    assert (cred["mount"], cred["role"]) == ("approle", "snapshot-operator")


def test_leeway_is_a_setting(mocks):
    run(lambda: _config(jwt=JwtAuthArgs(leeway_seconds=5)))
    assert mocks.named("vault-user-role").inputs["data"]["expiration_leeway"] == 5
