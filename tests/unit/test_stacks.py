"""Stack composition and typed config, with Pulumi mocks."""
import re

import pulumi
import pytest

from infra.vault_k8s import TlsSecretArgs
from infra.vault_seal import StaticSealArgs, TransitSealArgs
from stacks import composition_for, deploy
from stacks.config import ConfigError, DevConfig, ProdConfig, VaultSettings
from tests.unit.helpers import run

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


@pytest.mark.parametrize("mocks", [{"namespace": "vault-prod", "renderDir": "/tmp/out", "replicas": "5",
                                    "vaultEndpoints": '["https://a", "https://b", "https://c", "https://d", "https://e"]',
                                    "snapshotSchedule": "*/30 * * * *", "vaultMemoryLimit": "1Gi"}], indirect=True)
def test_prod_settings(mocks):
    cfg = ProdConfig.load()
    assert (cfg.namespace, cfg.render_dir, cfg.raft.replicas) == ("vault-prod", "/tmp/out", 5)
    assert cfg.vault_endpoints[-1] == "https://e" and cfg.snapshot_schedule == "*/30 * * * *"
    assert (cfg.resources.memory_limit, cfg.resources.cpu_limit) == ("1Gi", "1")
    assert (cfg.raft.key_shares, cfg.raft.key_threshold) == (5, 3)


@pytest.mark.parametrize("mocks", [{"seal": "transit", "transitSealAddress": "https://transit.example:8200",
                                    "transitSealCaSecret": "transit-ca", "tlsSecretName": "corp-tls",
                                    "tlsCaCert": "CORP CA", "storageClass": "fast"}], indirect=True)
def test_prod_settings_are_typed_component_args(mocks):
    cfg = ProdConfig.load()
    assert cfg.seal.args == TransitSealArgs(address="https://transit.example:8200", key_name="vault-unseal",
                                            token_secret_name="vault-transit-token", mount_path="transit/",
                                            ca_secret_name="transit-ca")
    assert cfg.seal.auto and not cfg.seal.generate_static_key
    assert cfg.tls_secret == TlsSecretArgs(name="corp-tls", ca_cert_pem="CORP CA")
    assert cfg.storage_class == "fast"


# The first bytes of a binary OpenPGP public key (old-format packet, tag 6): what the check looks at.
PGP_KEY = "mQENBGVvdGVzdA=="


@pytest.mark.parametrize("mocks", [{"seal": "static", "keyShares": "2", "keyThreshold": "2",
                                    "recoveryPgpKeys": f"{PGP_KEY},{PGP_KEY}"}], indirect=True)
def test_static_seal_defaults_to_a_generated_key_and_takes_custodians(mocks):
    cfg = ProdConfig.load()
    assert cfg.seal.args == StaticSealArgs(secret_name="vault-seal-key", key_id="1", previous_key_id="")
    assert cfg.seal.generate_static_key and cfg.seal.recovery_pgp_keys == [PGP_KEY, PGP_KEY]


def test_prod_defaults_leave_tls_and_storage_class_to_the_cluster(mocks):
    cfg = ProdConfig.load()
    assert (cfg.seal.kind, cfg.seal.args, cfg.tls_secret, cfg.storage_class) == ("shamir", None, None, None)
    assert cfg.resources.spec() == {"requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "64Mi"},
                                    "limits": {"cpu": "1", "memory": "512Mi", "ephemeral-storage": "1Gi"}}


@pytest.mark.parametrize("mocks,message", [
    ({"replicas": "4"}, "vault-envvars:replicas = 4 must be odd"),
    ({"replicas": "1"}, "vault-envvars:replicas = 1 is below the minimum 3"),
    ({"keyShares": "3", "keyThreshold": "4"}, "vault-envvars:keyThreshold = 4 must not exceed vault-envvars:keyShares = 3"),
    ({"vaultEndpoints": "https://a"}, "lists 1 endpoints; give one per replica (3)"),
    ({"snapshotSchedule": "hourly"}, "vault-envvars:snapshotSchedule = 'hourly' is not a cron schedule"),
    ({"skipAwait": "yes"}, "vault-envvars:skipAwait = 'yes' is not allowed; allowed values: true, false"),
    ({"localDatabase": "true", "databaseUrl": "postgresql://x"},
     "set vault-envvars:databaseUrl or vault-envvars:localDatabase, not both"),
    ({"serviceNodePort": "8080"},
     "vault-envvars:serviceNodePort = 8080 is out of range; allowed values: 0 (no NodePort) or 30000-32767"),
    ({"servicePublicUrl": "10.244.0.1:30080"}, "vault-envvars:servicePublicUrl = '10.244.0.1:30080' must be a URL"),
    ({"servicePublicUrl": "http://envvars.example"},
     "vault-envvars:servicePublicUrl = 'http://envvars.example' is not allowed; allowed values: https:// URLs"),
    ({"ingressHost": "envvars.example"}, "vault-envvars:ingressHost needs vault-envvars:ingressTlsSecret"),
    ({"localPlainHttp": "yes"}, "vault-envvars:localPlainHttp = 'yes' is not allowed; allowed values: true, false"),
    ({"seal": "awskms"}, "vault-envvars:seal = 'awskms' is not allowed; allowed values: shamir, static, transit"),
    ({"transitSealAddress": "https://t:8200"},
     "vault-envvars:transitSealAddress needs vault-envvars:seal = transit (it is shamir); allowed values of "
     "vault-envvars:seal: shamir, static, transit"),
    ({"seal": "transit"}, "vault-envvars:transitSealAddress = '' is not allowed"),
    ({"seal": "static", "transitSealKeyName": "k"}, "vault-envvars:transitSealKeyName needs vault-envvars:seal = transit"),
    ({"staticSealSecret": "s"}, "vault-envvars:staticSealSecret needs vault-envvars:seal = static (it is shamir)"),
    ({"seal": "static", "staticSealPreviousKeyId": "0"},
     "vault-envvars:staticSealPreviousKeyId needs vault-envvars:staticSealSecret"),
    ({"seal": "static", "staticSealSecret": "s", "staticSealPreviousKeyId": "1"},
     "vault-envvars:staticSealPreviousKeyId must differ from vault-envvars:staticSealKeyId = '1'"),
    ({"pgpKeys": "mQ=="}, "vault-envvars:pgpKeys is not allowed"),
    ({"recoveryPgpKeys": PGP_KEY}, "vault-envvars:recoveryPgpKeys needs an auto seal"),
    ({"seal": "static", "recoveryPgpKeys": PGP_KEY}, "vault-envvars:recoveryPgpKeys lists 1 keys; give one per share"),
    ({"seal": "static", "keyShares": "2", "keyThreshold": "1", "recoveryPgpKeys": f"{PGP_KEY},bm90IGEga2V5"},
     "vault-envvars:recoveryPgpKeys[1] is not an OpenPGP public key"),
], indirect=["mocks"])
def test_bad_prod_settings_name_the_key(mocks, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ProdConfig.load()


def test_dev_stack_composes_vault_identity_and_configuration(mocks):
    outputs = {}
    run(lambda: outputs.update(deploy("dev")))
    assert sorted(outputs) == ["alertmanager_url", "dashboard_url", "demo_user_passwords", "executor_role_id",
                               "jwt_issuer", "oidc_client_id", "oidc_client_secret", "postgres_container",
                               "prometheus_url", "service_container", "service_url", "vault_address",
                               "vault_root_token"]
    components = sorted(r.typ for r in mocks.resources if r.typ.startswith("vault-envvars:"))
    assert components == ["vault-envvars:infra:DatabaseSecrets", "vault-envvars:infra:DevIdentity",
                          "vault-envvars:infra:MonitoringDocker", "vault-envvars:infra:PostgresDocker",
                          "vault-envvars:infra:ServiceDocker", "vault-envvars:infra:VaultConfiguration",
                          "vault-envvars:infra:VaultDevServer"]
    # Vault's JWT mount trusts the service's login key, never the dev identity provider; KV v2 is adopted.
    jwt_config = mocks.named("vault-jwt-config").inputs["data"]
    assert jwt_config["jwt_validation_pubkeys"] == ["SIGNING-PUBLIC-PEM"] and "jwks_url" not in jwt_config
    assert jwt_config["bound_issuer"] == "vault-envvars-service"
    assert mocks.named("vault-kv").inputs["adopt"] is True


def test_dev_stack_exports_secrets_only_as_secrets(mocks):
    flags = {}

    def program():
        outputs = deploy("dev")
        return pulumi.Output.all(*[
            pulumi.Output.from_input(o.is_secret()).apply(lambda s, k=k: flags.__setitem__(k, s))
            for k, o in outputs.items()])

    run(program)
    assert flags == {"demo_user_passwords": True, "vault_root_token": True, "oidc_client_secret": True,
                     "executor_role_id": False, "jwt_issuer": False, "vault_address": False,
                     "oidc_client_id": False, "service_url": False, "service_container": False,
                     "dashboard_url": False, "prometheus_url": False, "alertmanager_url": False,
                     "postgres_container": False}


DEV_SOURCE = {"jwks_url": "http://127.0.0.1:8200/keys", "issuer": "http://vault:8200/iss"}


def test_vault_settings_defaults(mocks):
    s = VaultSettings.load(default_key_source=DEV_SOURCE)
    assert (s.server_flavor, s.auth_type, s.audiences) == ("openbao", "jwt", ["env-vars"])
    assert (s.jwks_url, s.issuer, s.oidc_discovery_url) == (DEV_SOURCE["jwks_url"], DEV_SOURCE["issuer"], "")
    assert (s.user_token_ttl, s.user_token_max_ttl) == (900, 3600)
    assert (s.executor_token_ttl, s.executor_token_max_ttl, s.executor_secret_id_ttl) == (1200, 3600, 30 * 86400)
    assert (s.kv_path, s.kv_max_versions) == ("secret", 10)


@pytest.mark.parametrize("mocks", [{
    "oidcDiscoveryUrl": "https://idp.example/realms/x", "jwtIssuer": "https://idp.example/realms/x",
    "jwtAudiences": '["env-vars", "dashboard"]', "userTokenTtl": "1h30m", "userTokenMaxTtl": "2h",
    "executorBoundCidrs": "10.0.0.0/8, 192.168.1.0/24", "kvPath": "/kv/",
}], indirect=True)
def test_vault_settings_for_a_real_idp_replace_the_dev_source(mocks):
    s = VaultSettings.load(default_key_source=DEV_SOURCE)
    assert (s.oidc_discovery_url, s.jwks_url, s.issuer) == (
        "https://idp.example/realms/x", "", "https://idp.example/realms/x")
    assert s.audiences == ["env-vars", "dashboard"]
    assert s.user_token_ttl == 5400
    assert s.executor_bound_cidrs == ["10.0.0.0/8", "192.168.1.0/24"]
    assert s.kv_path == "kv"


@pytest.mark.parametrize("mocks,message", [
    ({"authType": "ldap"}, "vault-envvars:authType = 'ldap' is not allowed; allowed values: jwt, oidc"),
    ({"serverFlavor": "consul"}, "vault-envvars:serverFlavor = 'consul' is not allowed; allowed values: openbao, vault"),
    ({"jwtAudiences": "[]"}, "vault-envvars:jwtAudiences must name at least one audience"),
    ({"jwtAudiences": "[1, 2]"}, "vault-envvars:jwtAudiences must be a list of strings"),
    ({"userTokenTtl": "15 minutes"}, "vault-envvars:userTokenTtl = '15 minutes' is not a duration"),
    ({"userTokenTtl": "2h"}, "vault-envvars:userTokenTtl must not exceed vault-envvars:userTokenMaxTtl"),
    ({"kvMaxVersions": "0"}, "vault-envvars:kvMaxVersions = 0 is below the minimum 1"),
    ({"jwksUrl": "https://a", "oidcDiscoveryUrl": "https://b"}, "set only one of"),
], indirect=["mocks"])
def test_bad_vault_settings_name_the_key(mocks, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        VaultSettings.load(default_key_source=DEV_SOURCE)


def test_a_stack_without_dev_identity_must_name_a_key_source(mocks):
    with pytest.raises(ConfigError, match="set one of vault-envvars:oidcDiscoveryUrl, vault-envvars:jwksUrl"):
        VaultSettings.load()


def test_dev_service_trusts_the_dev_identity_and_gets_its_secret_id_as_a_file(mocks):
    run(lambda: deploy("dev"))
    # Vault's user role takes the service's login tokens, never the identity provider's.
    assert mocks.named("vault-user-role").inputs["data"]["bound_audiences"] == ["vault-envvars:user-role"]
    api = mocks.named("envvars-api").inputs
    assert api["env"]["ENVVARS_OIDC_AUDIENCE"] == "client_id-mock"
    assert api["env"]["ENVVARS_OIDC_JWKS_URL"] == \
        "http://vault:8200/v1/identity/oidc/provider/envvars/.well-known/keys"
    assert api["env"]["ENVVARS_APPROLE_SECRET_ID_FILE"] == "/run/envvars/approle-secret-id"
    assert api["files"]["/run/envvars/approle-secret-id"]["mode"] == 0o400
    assert api["env"]["ENVVARS_VAULT_LOGIN_KEY_FILE"] == "/run/envvars/vault-login-key"
    assert api["files"]["/run/envvars/vault-login-key"] == {"content": "SIGNING-PRIVATE-KEY-PEM", "mode": 0o400}
    assert "secret-id-mock" not in str(api["env"]) + str(api["command"]) + str(api["labels"])
    assert "SIGNING-PRIVATE-KEY-PEM" not in str(api["env"]) + str(api["command"]) + str(api["labels"])
    # uid 0 with only the jobs' sandbox's capabilities, no /proc of the jobs' own (a container's is masked).
    assert (api["user"], api["read_only"], api["cap_drop"]) == ("0:0", True, ["ALL"])
    assert sorted(api["cap_add"]) == ["KILL", "SETGID", "SETUID"] and "no-new-privileges" in api["security_opt"]
    assert api["env"]["ENVVARS_JOB_PROC"] == "none"


def test_dev_dashboard_logs_in_through_the_dev_provider_at_a_port_known_in_advance(mocks):
    urls = []
    run(lambda: deploy("dev")["dashboard_url"].apply(urls.append))
    api = mocks.named("envvars-api").inputs
    # The port was picked before the container: the OIDC client's redirect URIs name it.
    assert api["ports"] == [{"internal": 8080, "external": 18080}]
    assert urls == ["http://127.0.0.1:18080/dashboard/"]
    uris = mocks.named("identity-client").inputs["data"]["redirect_uris"]
    assert "http://127.0.0.1:18080/dashboard/callback" in uris and "http://localhost:18080/dashboard/callback" in uris
    env = api["env"]
    assert env["ENVVARS_PUBLIC_URL"] == "http://127.0.0.1:18080"
    assert env["ENVVARS_OIDC_AUTHORIZATION_URL"].endswith("/ui/vault/identity/oidc/provider/envvars/authorize")
    assert env["ENVVARS_OIDC_SCOPES"] == "openid profile"
    # The client secret and the session key are 0400 files, never settings.
    assert env["ENVVARS_OIDC_CLIENT_SECRET_FILE"] == "/run/envvars/oidc-client-secret"
    assert env["ENVVARS_SESSION_KEY_FILE"] == "/run/envvars/session-key"
    for f in ("oidc-client-secret", "session-key"):
        assert api["files"][f"/run/envvars/{f}"]["mode"] == 0o400
    assert "client_secret-mock" not in str(env) and api["files"]["/run/envvars/oidc-client-secret"]["content"] == \
        "client_secret-mock"
    assert "preferred_username" in mocks.named("identity-scope-profile").inputs["data"]["template"]


@pytest.mark.parametrize("mocks", [{"serviceHostPort": "18555"}], indirect=True)
def test_dev_service_host_port_setting_is_used_as_given(mocks):
    run(lambda: deploy("dev"))
    assert mocks.of_type("random:FreePort") == []
    assert mocks.named("envvars-api").inputs["ports"] == [{"internal": 8080, "external": 18555}]


@pytest.mark.parametrize("mocks", [{
    "vaultEndpoints": '["https://127.0.0.1:18200", "https://127.0.0.1:18201", "https://127.0.0.1:18202"]',
    "jwksUrl": "https://idp.example/keys", "jwtIssuer": "https://idp.example", "databaseUrl": "postgresql://x",
    "ingressHost": "envvars.example", "ingressTlsSecret": "envvars-tls",
}], indirect=True)
def test_prod_with_vault_endpoints_bootstraps_configures_and_deploys_the_service_through_them(mocks):
    outputs = {}
    run(lambda: outputs.update(deploy("prod")))
    boot = mocks.of_type("vault:Bootstrap")[0].inputs
    assert boot["revoke_root"] is True and boot["node_addresses"][0] == "https://127.0.0.1:18200"
    assert mocks.named("vault-autopilot").inputs["data"]["min_quorum"] == 3
    dep = mocks.named("envvars-deployment").inputs["spec"]
    env = {e["name"]: e["value"] for e in dep["template"]["spec"]["containers"][0]["env"]}
    assert env["ENVVARS_VAULT_ADDR"] == "https://vault-active.vault.svc:8200"
    assert env["ENVVARS_OIDC_JWKS_URL"] == "https://idp.example/keys"
    assert env["ENVVARS_PUBLIC_URL"] == "https://envvars.example" and env["ENVVARS_SECURE_COOKIES"] == "true"
    # A stopping pod's running jobs get the service's grace to end before Kubernetes kills the pod.
    assert dep["template"]["spec"]["terminationGracePeriodSeconds"] > int(env["ENVVARS_SHUTDOWN_GRACE_SECONDS"]) > 0
    assert "postgresql://x" not in str(dep)
    # A digest of the Secret and the settings the pods read at start: a change to either rolls them.
    assert re.fullmatch(r"[0-9a-f]{64}", dep["template"]["metadata"]["annotations"]["checksum/config"])
    assert mocks.named("envvars-credentials").inputs["stringData"]["database-url"] == "postgresql://x"
    assert sorted(outputs) == ["alertmanager_url", "dashboard_url", "executor_role_id", "namespace",
                               "prometheus_url", "service_internal_url", "service_url", "vault_admin_token",
                               "vault_ca_cert", "vault_internal_address", "vault_nodes", "vault_seal",
                               "vault_unseal_keys"]
    # Bootstrap and configuration reach the pods where the stack's config says, with the cluster's own CA.
    assert boot["node_addresses"] == ["https://127.0.0.1:18200", "https://127.0.0.1:18201", "https://127.0.0.1:18202"]
    assert boot["ca_cert_pem"] == "CA-PEM"
    kv = mocks.named("vault-kv").inputs
    assert (kv["address"], kv["token"], kv["ca_cert_pem"]) == ("https://127.0.0.1:18200", "admin-token-mock", "CA-PEM")


PROD_IDP = {"jwksUrl": "https://idp.example/keys", "jwtIssuer": "https://idp.example"}

ENDPOINTS = '["https://127.0.0.1:18200", "https://127.0.0.1:18201", "https://127.0.0.1:18202"]'


@pytest.mark.parametrize("mocks,pgp", [({"vaultEndpoints": ENDPOINTS, **PROD_IDP, "seal": "static"}, False),
                                       ({"vaultEndpoints": ENDPOINTS, **PROD_IDP, "seal": "static", "keyShares": "1",
                                         "keyThreshold": "1", "recoveryPgpKeys": PGP_KEY}, True)],
                         indirect=["mocks"])
def test_prod_with_an_auto_seal_exports_no_share_in_clear(mocks, pgp):
    outputs, flags = {}, {}

    def program():
        out = deploy("prod")
        outputs.update(out)
        return pulumi.Output.all(*[pulumi.Output.from_input(o.is_secret()).apply(
            lambda s, k=k: flags.__setitem__(k, s)) for k, o in out.items()])

    run(program)
    boot = mocks.of_type("vault:Bootstrap")[0].inputs
    assert boot["seal_type"] == "static" and boot["recovery_pgp_keys"] == ([PGP_KEY] if pgp else [])
    assert "vault_unseal_keys" not in outputs and "vault_recovery_keys" not in outputs
    if pgp:  # ciphertexts only their custodians open: a plain output
        assert flags["vault_recovery_keys_pgp"] is False and "vault_recovery_keys_location" not in outputs
    else:
        assert flags["vault_recovery_keys_location"] is False and "vault_recovery_keys_pgp" not in outputs
    assert mocks.of_type("random:RandomKey") and mocks.named("vault-seal-key").inputs["stringData"]["key"]


@pytest.mark.parametrize("mocks", [{**PROD_IDP, "namespace": "vault-prod", "databaseUrl": "postgresql://x"}],
                         indirect=True)
def test_prod_by_default_reaches_the_pods_through_the_kubernetes_api_in_one_up(mocks):
    seen = []
    run(lambda: deploy("prod")["vault_nodes"].apply(seen.append))
    boot = mocks.of_type("vault:Bootstrap")[0]
    pods = [f"k8s://vault-prod/vault-{i}:8200" for i in range(3)]
    assert boot.inputs["node_addresses"] == pods and boot.inputs["revoke_root"] is True
    # It waits for the cluster's objects: none of them may wait for pods that only the bootstrap makes Ready.
    for name in ("vault-sts", "vault-svc-vault-active", "vault-svc-vault"):
        assert mocks.named(name).inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    # Configuration talks to the active node, whichever pod leads, through the active Service.
    kv = mocks.named("vault-kv").inputs
    assert (kv["address"], kv["token"], kv["ca_cert_pem"]) == (
        "k8s://vault-prod/svc/vault-active:8200", "admin-token-mock", "CA-PEM")
    assert mocks.named("vault-snapshots-credential") and mocks.named("envvars-deployment")
    assert seen == [pods]  # for tools/stack_check.py


@pytest.mark.parametrize("mocks", [{"bootstrap": "false"}, {"renderDir": "/tmp/manifests"}], indirect=True,
                         ids=["bootstrap-false", "render-dir"])
def test_prod_objects_only_for_api_servers_without_kubelets(mocks):
    outputs = {}
    run(lambda: outputs.update(deploy("prod")))  # no identity provider needed: nothing is configured
    assert mocks.of_type("vault:Bootstrap") == [] and mocks.of_type("dynamic/vault:Endpoint") == []
    assert mocks.named("vault-sts") and mocks.named("vault-snapshots-cronjob")
    assert not [r for r in mocks.resources if r.name == "vault-snapshots-credential"]  # no AppRole
    assert sorted(outputs) == ["alertmanager_url", "namespace", "prometheus_url", "vault_ca_cert",
                               "vault_internal_address"]


@pytest.mark.parametrize("mocks,message", [
    ({"renderDir": "/tmp/m", "bootstrap": "true"}, "vault-envvars:bootstrap = true needs a cluster"),
    ({"bootstrap": "later"}, "vault-envvars:bootstrap = 'later' is not allowed; allowed values: true, false"),
], indirect=["mocks"])
def test_prod_bootstrap_setting_is_checked(mocks, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ProdConfig.load()


def test_prod_without_a_key_source_says_which_setting_it_needs(mocks):
    with pytest.raises(ConfigError, match="set one of vault-envvars:oidcDiscoveryUrl"):
        run(lambda: deploy("prod"))


@pytest.mark.parametrize("mocks", [{"tlsSecretName": "corp-tls", "tlsCaCert": "CORP CA", "bootstrap": "false"}],
                         indirect=True)
def test_prod_with_a_given_tls_secret_makes_no_certificate_and_exports_its_ca(mocks):
    seen = []
    run(lambda: deploy("prod")["vault_ca_cert"].apply(seen.append))
    assert mocks.of_type("tls:TlsBundle") == [] and seen == ["CORP CA"]
    assert mocks.named("vault-snapshots-agent").inputs["data"]["ca.pem"] == "CORP CA"


@pytest.mark.parametrize("mocks", [{"namespace": "vault", "localDatabase": "true", "devIdentity": "true",
                                    "serviceNodePort": "30080", "servicePublicUrl": "http://10.244.0.1:30080",
                                    "localPlainHttp": "true", "jobImage": "localhost/base:1"}], indirect=True)
def test_prod_local_stand_ins_database_identity_and_node_port(mocks):
    """Pulumi.prod-local.yaml's keys: a PostgreSQL StatefulSet, Vault's own OIDC provider, a NodePort."""
    outputs = {}
    run(lambda: outputs.update(deploy("prod-local")))
    assert mocks.named("postgres-sts")
    creds = mocks.named("envvars-credentials").inputs["stringData"]
    assert creds["database-url"].startswith("postgresql+psycopg://envvars:")
    dep = mocks.named("envvars-deployment").inputs["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in dep["containers"][0]["env"]}
    # The service checks tokens of Vault's own provider, reached through the active Service.
    issuer = "https://vault-active.vault.svc:8200/v1/identity/oidc/provider/envvars"
    assert env["ENVVARS_OIDC_ISSUER"] == issuer and env["ENVVARS_OIDC_JWKS_URL"] == issuer + "/.well-known/keys"
    assert env["ENVVARS_PUBLIC_URL"] == "http://10.244.0.1:30080" and env["ENVVARS_KUBERNETES_IMAGE"] == "localhost/base:1"
    assert env["ENVVARS_SECURE_COOKIES"] == "false"  # the local stand-in over plain http only
    assert dep["enableServiceLinks"] is False  # else Kubernetes sets ENVVARS_PORT=tcp://... from the Service
    jwt = mocks.named("vault-jwt-config").inputs["data"]
    assert jwt["jwt_validation_pubkeys"] == ["SIGNING-PUBLIC-PEM"]
    assert env["ENVVARS_VAULT_LOGIN_KEY_FILE"] == "/run/envvars/vault-login-key"
    assert creds["vault-login-key"] == "SIGNING-PRIVATE-KEY-PEM"
    svc = mocks.named("envvars-svc").inputs["spec"]
    assert svc["type"] == "NodePort" and svc["ports"][0]["nodePort"] == 30080
    assert {"service_url", "dashboard_url", "demo_user_passwords", "oidc_client_id"} <= set(outputs)


@pytest.mark.parametrize("mocks", [{**PROD_IDP, "databaseUrl": "postgresql://x", "ingressHost": "envvars.example",
                                    "ingressTlsSecret": "envvars-tls"}], indirect=True)
def test_prod_jobs_reach_nothing_by_default_and_namespaces_enforce_restricted(mocks):
    run(lambda: deploy("prod"))
    policy = mocks.named("envvars-job-isolation").inputs["spec"]
    assert policy["podSelector"] == {} and policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [] and policy["egress"] == []
    for ns in ("vault-namespace", "envvars-jobs-namespace"):
        labels = mocks.named(ns).inputs["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted", ns


@pytest.mark.parametrize("mocks", [{
    **PROD_IDP, "databaseUrl": "postgresql://x", "ingressHost": "envvars.example", "ingressTlsSecret": "envvars-tls",
    "kubeApiServerCidrs": "10.96.0.1/32, 192.168.10.5/32",
    "jobEgress": '[{"cidr": "0.0.0.0/0", "ports": [443]}, {"namespace": "pypi-mirror"}, {"cidr": "192.168.10.5/32"}]',
}], indirect=True)
def test_prod_job_egress_allowlist_never_covers_metadata_or_the_api_server_unless_named(mocks):
    run(lambda: deploy("prod"))
    wide, mirror, api = mocks.named("envvars-job-isolation").inputs["spec"]["egress"]
    assert wide == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0",
                                        "except": ["10.96.0.1/32", "169.254.169.254/32", "192.168.10.5/32"]}}],
                    "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "UDP", "port": 443}]}
    assert mirror == {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "pypi-mirror"}}}]}
    assert api == {"to": [{"ipBlock": {"cidr": "192.168.10.5/32"}}]}  # named: allowed


@pytest.mark.parametrize("mocks,message", [
    ({"jobEgress": "[{\"cidr\": \"10.0.0.1/8\"}]"}, "vault-envvars:jobEgress[0]:"),
    ({"jobEgress": "[{\"cidr\": \"10.0.0.0/8\", \"namespace\": \"x\"}]"}, "exactly one of cidr or namespace"),
    ({"jobEgress": "[{\"host\": \"x\"}]"}, "vault-envvars:jobEgress[0] has unknown keys ['host']"),
    ({"jobEgress": "[{\"cidr\": \"10.0.0.0/8\", \"ports\": [0]}]"}, "ports are whole numbers 1-65535"),
    ({"jobEgress": "cidr=10.0.0.0/8"}, "vault-envvars:jobEgress is not valid JSON"),
    ({"kubeApiServerCidrs": "api.example"}, "vault-envvars:kubeApiServerCidrs: 'api.example' is not a network"),
], indirect=["mocks"])
def test_bad_job_egress_settings_name_the_key(mocks, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ProdConfig.load()


HOOK = "https://platform.example/hooks/envvars"
HOOK_SECRET = "canary-platform-hook-7d3f1a"  # noqa: S105 (planted: must be in no setting, only in the file)


@pytest.fixture
def hook_secret_is_secret(mocks):
    """platformWebhookSecret as `pulumi config set --secret` leaves it (the mocks' config has no secret keys)."""
    config = {k: v for k, v in pulumi.runtime.config.CONFIG.get().items()}
    pulumi.runtime.set_all_config(config, ["vault-envvars:platformWebhookSecret"])
    yield
    pulumi.runtime.set_all_config(config, [])


@pytest.mark.parametrize("mocks,message", [
    ({"platformWebhookUrl": "ftp://platform.example/x"},
     "vault-envvars:platformWebhookUrl = 'ftp://platform.example/x' is not allowed; allowed values: an http:// or "
     "https:// URL"),
    ({"platformWebhookUrl": "https://"}, "vault-envvars:platformWebhookUrl = 'https://' is not allowed"),
    ({"platformWebhookSecret": HOOK_SECRET}, "vault-envvars:platformWebhookSecret needs vault-envvars:platformWebhookUrl"),
], indirect=["mocks"])
def test_bad_platform_webhook_settings_name_the_key(mocks, hook_secret_is_secret, message):
    for load in (DevConfig.load, ProdConfig.load):
        with pytest.raises(ConfigError, match=re.escape(message)) as err:
            load()
        assert HOOK_SECRET not in str(err.value)


def _deploy_with_secret_flags(stack: str) -> tuple[dict, dict]:
    values, flags = {}, {}

    def program():
        out = deploy(stack)
        return pulumi.Output.all(*[pulumi.Output.all(o, pulumi.Output.from_input(o.is_secret())).apply(
            lambda vs, k=k: (values.__setitem__(k, vs[0]), flags.__setitem__(k, vs[1]))) for k, o in out.items()])

    run(program)
    return values, flags


@pytest.mark.parametrize("mocks,operators", [({"platformWebhookUrl": HOOK}, False),
                                             ({"platformWebhookUrl": HOOK, "platformWebhookSecret": HOOK_SECRET}, True)],
                         indirect=["mocks"])
def test_dev_platform_webhook_reaches_the_container_its_secret_only_as_a_file_and_a_secret_output(
        mocks, hook_secret_is_secret, operators):
    values, flags = _deploy_with_secret_flags("dev")
    generated = mocks.of_type("random:RandomSecret")
    secret = HOOK_SECRET if operators else "x" * 32  # the mocks' RandomSecret result
    assert bool([r for r in generated if r.name == "platform-webhook-secret"]) is not operators
    api = mocks.named("envvars-api")
    env = api.inputs["env"]
    assert env["ENVVARS_STACK_WEBHOOK_URL"] == HOOK
    assert env["ENVVARS_STACK_WEBHOOK_SECRET_FILE"] == "/run/envvars/stack-webhook-secret"
    assert api.inputs["files"]["/run/envvars/stack-webhook-secret"] == {"content": secret, "mode": 0o400}
    assert "files" in api.secret_inputs  # encrypted in state
    assert (values["platform_webhook_secret"], flags["platform_webhook_secret"]) == (secret, True)
    if operators:
        seen = str(env) + str(api.inputs["command"]) + str(api.inputs["labels"])
        assert HOOK_SECRET not in seen
        # In clear nowhere else: every other resource's inputs and every other output.
        assert not [r.name for r in mocks.resources if r.name != "envvars-api" and HOOK_SECRET in str(r.inputs)]
        assert not [k for k, v in values.items() if k != "platform_webhook_secret" and HOOK_SECRET in str(v)]


@pytest.mark.parametrize("mocks", [{"platformWebhookUrl": HOOK, "platformWebhookSecret": HOOK_SECRET}], indirect=True)
def test_a_platform_webhook_secret_in_clear_config_is_refused_naming_the_key(mocks):
    for load in (DevConfig.load, ProdConfig.load):
        with pytest.raises(ConfigError, match=re.escape(
                "vault-envvars:platformWebhookSecret must be a secret: set it with `pulumi config set --secret")) as err:
            load()
        assert HOOK_SECRET not in str(err.value)


def test_dev_without_a_platform_webhook_sets_none(mocks):
    run(lambda: deploy("dev"))
    env = mocks.named("envvars-api").inputs["env"]
    assert not [k for k in env if "STACK_WEBHOOK" in k]
    assert "/run/envvars/stack-webhook-secret" not in mocks.named("envvars-api").inputs["files"]


@pytest.mark.parametrize("mocks", [{**PROD_IDP, "databaseUrl": "postgresql://x", "platformWebhookUrl": HOOK,
                                    "platformWebhookSecret": HOOK_SECRET}], indirect=True)
def test_prod_platform_webhook_reaches_the_pods_as_a_file_from_the_secret(mocks, hook_secret_is_secret):
    values, flags = _deploy_with_secret_flags("prod")
    dep = mocks.named("envvars-deployment").inputs["spec"]
    container = dep["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ENVVARS_STACK_WEBHOOK_URL"] == HOOK
    assert env["ENVVARS_STACK_WEBHOOK_SECRET_FILE"] == "/run/envvars/stack-webhook-secret"
    assert {"name": "credentials", "mountPath": "/run/envvars", "readOnly": True} in container["volumeMounts"]
    credentials = mocks.named("envvars-credentials")
    assert credentials.inputs["stringData"]["stack-webhook-secret"] == HOOK_SECRET
    assert "stringData" in credentials.secret_inputs
    assert HOOK_SECRET not in str(dep)
    assert (values["platform_webhook_secret"], flags["platform_webhook_secret"]) == (HOOK_SECRET, True)
    assert not [k for k, v in values.items() if k != "platform_webhook_secret" and HOOK_SECRET in str(v)]
