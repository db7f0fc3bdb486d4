"""The Vault configuration applied by a real `pulumi up` to a real OpenBao (dev server and 3-node TLS
Raft cluster), then its behaviour checked with hvac as each kind of caller."""
import json
import os
import secrets
import time

import hvac
import pytest
import requests
from hvac.exceptions import Forbidden, InvalidRequest
from pulumi import automation as auto

from devkit.jwt_issuer import TestIssuer
from tests.integration.helpers import config_stack
from tests.service.helpers import vault_login_token

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture(scope="module")
def configured_dev(pulumi_backend, bao_dev_server, issuer):
    s = config_stack(pulumi_backend, bao_dev_server, issuer, adopt_kv=True)
    try:
        outputs = s.up().outputs
        yield s, {k: v.value for k, v in outputs.items()}
    finally:
        s.destroy()


def _root(server) -> hvac.Client:
    return hvac.Client(url=server.address, token=server.token, verify=server.verify)


def _user(server, outputs, sub: str) -> hvac.Client:
    """A user's Vault session, logged in as the service logs users in (its login key)."""
    c = hvac.Client(url=server.address, verify=server.verify)
    c.auth.jwt.jwt_login(role="user", jwt=vault_login_token(outputs, sub), path="jwt")
    return c


def _executor(server, outputs) -> hvac.Client:
    c = hvac.Client(url=server.address, verify=server.verify)
    c.auth.approle.login(role_id=outputs["executor_role_id"], secret_id=outputs["executor_secret_id"])
    return c


def _kv(c: hvac.Client):
    return c.secrets.kv.v2


# --- idempotence and drift --------------------------------------------------------------------------

def test_second_up_changes_nothing(configured_dev):
    s, _ = configured_dev
    assert s.changes_of_second_up() == {}


def test_later_runs_need_only_the_config_admin_token(configured_dev, bao_dev_server):
    s, _ = configured_dev
    admin = _root(bao_dev_server).auth.token.create(policies=["config-admin"], ttl="10m")["auth"]["client_token"]
    s.stack.set_config("vault-envvars:vaultToken", auto.ConfigValue(admin, secret=True))
    try:
        s.stack.refresh(on_output=lambda _l: None)
        assert s.changes_of_second_up() == {}
    finally:
        s.stack.set_config("vault-envvars:vaultToken", auto.ConfigValue(bao_dev_server.token, secret=True))
        s.up()


def test_manual_change_is_seen_as_drift_and_repaired(configured_dev, bao_dev_server):
    s, _ = configured_dev
    root = _root(bao_dev_server)
    root.write("auth/approle/role/executor", token_ttl=7200, token_max_ttl=7200)

    s.stack.refresh(on_output=lambda _l: None)
    preview = s.stack.preview(on_output=lambda _l: None, diff=True)
    assert preview.change_summary.get("update") == 1

    s.up()
    assert root.read("auth/approle/role/executor")["data"]["token_ttl"] == 1200


def test_secret_id_is_not_in_plain_text_in_state(configured_dev):
    s, outputs = configured_dev
    assert outputs["executor_secret_id"]
    assert s.stored_text_contains(outputs["executor_secret_id"]) is False


# --- users ------------------------------------------------------------------------------------------

def test_user_manages_only_own_env_vars(configured_dev, bao_dev_server, issuer):
    alice, bob = _user(bao_dev_server, configured_dev[1], "alice"), _user(bao_dev_server, configured_dev[1], "bob")
    path = f"users/alice/{secrets.token_hex(4)}"
    _kv(alice).create_or_update_secret(path=path, secret={"value": "a1"}, mount_point="secret")
    assert _kv(alice).read_secret_version(path=path, mount_point="secret",
                                          raise_on_deleted_version=True)["data"]["data"] == {"value": "a1"}
    assert path.split("/")[-1] in _kv(alice).list_secrets(path="users/alice", mount_point="secret")["data"]["keys"]
    _kv(alice).create_or_update_secret(path=path, secret={"value": "a2"}, mount_point="secret")
    # Versions and rollback (service/core/versions.py): an older version's value and the metadata listing
    # the versions, read as the user.
    assert _kv(alice).read_secret_version(path=path, version=1, mount_point="secret",
                                          raise_on_deleted_version=True)["data"]["data"] == {"value": "a1"}
    assert set(_kv(alice).read_secret_metadata(path=path, mount_point="secret")["data"]["versions"]) == {"1", "2"}

    for attempt in (
        lambda: _kv(bob).read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True),
        lambda: _kv(bob).read_secret_version(path=path, version=1, mount_point="secret",
                                             raise_on_deleted_version=True),
        lambda: _kv(bob).create_or_update_secret(path=path, secret={"value": "b"}, mount_point="secret"),
        lambda: _kv(bob).list_secrets(path="users/alice", mount_point="secret"),
        lambda: _kv(bob).read_secret_metadata(path=path, mount_point="secret"),
        lambda: _kv(bob).delete_metadata_and_all_versions(path=path, mount_point="secret"),
        lambda: _kv(bob).list_secrets(path="users", mount_point="secret"),
    ):
        with pytest.raises(Forbidden):
            attempt()

    _kv(alice).delete_metadata_and_all_versions(path=path, mount_point="secret")
    assert path.split("/")[-1] not in (
        _kv(alice).list_secrets(path="users/alice", mount_point="secret")["data"]["keys"]
        if _has_keys(alice, "users/alice") else [])


def _has_keys(c, path) -> bool:
    try:
        c.secrets.kv.v2.list_secrets(path=path, mount_point="secret")
        return True
    except hvac.exceptions.InvalidPath:
        return False


def test_the_service_login_key_is_not_in_plain_text_in_state(configured_dev):
    s, outputs = configured_dev
    assert "PRIVATE KEY" in outputs["service_login_key"]
    assert s.stored_text_contains(outputs["service_login_key"].splitlines()[1]) is False


@pytest.mark.parametrize("case", ["the identity provider's own token", "a case variant from the identity provider",
                                  "wrong audience", "expired", "wrong key", "wrong issuer"])
def test_bad_user_tokens_are_refused(configured_dev, bao_dev_server, issuer, case):
    """Vault's user role takes only the service's login tokens: a token the identity provider signed
    (the one the stack names as the users' key source, with its audience) logs in nowhere."""
    _, outputs = configured_dev
    token = {
        "the identity provider's own token": lambda: issuer.token("alice"),
        "a case variant from the identity provider": lambda: issuer.token("ALICE"),
        "wrong audience": lambda: vault_login_token(outputs, "alice", aud=issuer.audience),
        "expired": lambda: vault_login_token(outputs, "alice", exp=int(time.time()) - 120),
        "wrong key": lambda: vault_login_token({"service_login_key": _other_es256_key()}, "alice"),
        "wrong issuer": lambda: vault_login_token(outputs, "alice", iss=issuer.iss),
    }[case]()
    c = hvac.Client(url=bao_dev_server.address)
    with pytest.raises((InvalidRequest, Forbidden)):
        c.auth.jwt.jwt_login(role="user", jwt=token, path="jwt")


def _other_es256_key() -> str:
    from infra.providers.tls import make_signing_key

    return make_signing_key()["key_pem"]


# --- executor ---------------------------------------------------------------------------------------

def test_executor_reads_any_user_and_writes_nothing(configured_dev, bao_dev_server, issuer):
    _, outputs = configured_dev
    alice = _user(bao_dev_server, configured_dev[1], "alice")
    path = f"users/alice/{secrets.token_hex(4)}"
    _kv(alice).create_or_update_secret(path=path, secret={"value": "for the job"}, mount_point="secret")

    executor = _executor(bao_dev_server, outputs)
    assert _kv(executor).read_secret_version(path=path, mount_point="secret",
                                             raise_on_deleted_version=True)["data"]["data"]["value"] == "for the job"
    assert "alice/" in _kv(executor).list_secrets(path="users", mount_point="secret")["data"]["keys"]
    # A rerun of the same versions reads an older version exactly (read on the data path covers ?version=).
    _kv(alice).create_or_update_secret(path=path, secret={"value": "second"}, mount_point="secret")
    old = _kv(executor).read_secret_version(path=path, version=1, mount_point="secret", raise_on_deleted_version=True)
    assert (old["data"]["data"]["value"], old["data"]["metadata"]["version"]) == ("for the job", 1)
    for attempt in (
        lambda: _kv(executor).create_or_update_secret(path=path, secret={"value": "x"}, mount_point="secret"),
        lambda: _kv(executor).delete_metadata_and_all_versions(path=path, mount_point="secret"),
        lambda: executor.sys.list_policies(),
        lambda: executor.read("auth/approle/role/executor/role-id"),
    ):
        with pytest.raises(Forbidden):
            attempt()
    token = executor.auth.token.lookup_self()["data"]
    assert token["policies"] == ["default", "executor"] and token["ttl"] <= 1200


def test_used_up_and_expired_secret_ids_are_refused(configured_dev, bao_dev_server):
    _, outputs = configured_dev
    root = _root(bao_dev_server)
    once = root.write("auth/approle/role/executor/secret-id", num_uses=1)["data"]["secret_id"]
    c = hvac.Client(url=bao_dev_server.address)
    c.auth.approle.login(role_id=outputs["executor_role_id"], secret_id=once)
    with pytest.raises((InvalidRequest, Forbidden)):
        c.auth.approle.login(role_id=outputs["executor_role_id"], secret_id=once)

    short = root.write("auth/approle/role/executor/secret-id", ttl="1s")["data"]["secret_id"]
    time.sleep(2.5)
    with pytest.raises((InvalidRequest, Forbidden)):
        c.auth.approle.login(role_id=outputs["executor_role_id"], secret_id=short)


# --- every policy on every relevant path ------------------------------------------------------------

ALICE = "secret/data/users/alice/ev"
BOB = "secret/data/users/bob/ev"
CAPABILITIES = {
    # policy: {path: expected capabilities}
    "user(alice)": {
        ALICE: {"create", "read", "update", "delete", "list"},
        "secret/metadata/users/alice/ev": {"read", "delete", "list"},
        "secret/metadata/users/alice": {"list"},
        BOB: {"deny"},
        "secret/metadata/users/bob/ev": {"deny"},
        "secret/metadata/users": {"deny"},
        "secret/config": {"deny"},
        "sys/policies/acl/user": {"deny"},
        "sys/storage/raft/snapshot": {"deny"},
    },
    "executor": {
        ALICE: {"read"},
        BOB: {"read"},
        "secret/metadata/users/alice": {"list"},
        "secret/metadata/users/": {"list"},
        "secret/data/other": {"deny"},
        "secret/config": {"deny"},
        "sys/policies/acl/executor": {"deny"},
        "sys/storage/raft/snapshot": {"deny"},
    },
    "snapshot-operator": {
        "sys/storage/raft/snapshot": {"read"},
        ALICE: {"deny"},
        "secret/metadata/users/": {"deny"},
        "sys/storage/raft/snapshot-force": {"deny"},
        "sys/policies/acl/user": {"deny"},
    },
    "config-admin": {
        "sys/mounts/secret": {"create", "read", "update", "delete", "sudo"},
        "sys/policies/acl/user": {"create", "read", "update", "delete"},
        "sys/policies/acl/config-admin": {"read"},
        "sys/policies/acl/someone-else": {"deny"},
        "auth/approle/role/executor": {"create", "read", "update", "delete", "list"},
        "auth/jwt/role/user": {"create", "read", "update", "delete", "list"},
        "secret/config": {"create", "read", "update"},
        ALICE: {"deny"},
        "secret/metadata/users/": {"deny"},
        "sys/storage/raft/snapshot": {"deny"},
        "sys/policies/acl/root": {"deny"},
        "auth/token/create": {"deny"},
        # Break-glass: with a quorum of unseal keys as well (tools/raft_drills.py).
        "sys/generate-root-token/attempt": {"create", "read", "update", "delete"},
    },
}


@pytest.mark.parametrize("policy", sorted(CAPABILITIES))
def test_capabilities_matrix(configured_dev, bao_dev_server, issuer, policy):
    if policy == "user(alice)":
        client = _user(bao_dev_server, configured_dev[1], "alice")
    else:
        token = _root(bao_dev_server).auth.token.create(policies=[policy], ttl="5m")
        client = hvac.Client(url=bao_dev_server.address, token=token["auth"]["client_token"])
    paths = list(CAPABILITIES[policy])
    got = client.adapter.post("/v1/sys/capabilities-self", json={"paths": paths})["data"]
    assert {p: set(got[p]) for p in paths} == CAPABILITIES[policy]


def test_no_policy_grants_everything(configured_dev, bao_dev_server):
    root = _root(bao_dev_server)
    for name in ("user", "executor", "snapshot-operator", "config-admin"):
        text = root.sys.read_acl_policy(name)["data"]["policy"]
        assert 'path "*"' not in text and '"sys/*"' not in text and "root" not in text.split("#")[0]


# --- audit --------------------------------------------------------------------------------------------

def test_audit_logs_every_request_and_never_a_value(configured_dev, bao_dev_server, issuer):
    canary = f"canary-{secrets.token_hex(12)}"
    alice = _user(bao_dev_server, configured_dev[1], "alice")
    path = f"users/alice/audit-{secrets.token_hex(4)}"
    _kv(alice).create_or_update_secret(path=path, secret={"value": canary}, mount_point="secret")
    _kv(alice).read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
    time.sleep(0.3)
    with open(bao_dev_server.audit_log) as f:
        raw = f.read()
    assert canary not in raw
    entries = [json.loads(line) for line in raw.splitlines() if line.strip()]
    mine = [e for e in entries if e.get("request", {}).get("path") == f"secret/data/{path}"]
    # Two requests (create, read): each logged once as a request and once as a response.
    assert sorted((e["type"], e["request"]["operation"]) for e in mine) == [
        ("request", "create"), ("request", "read"), ("response", "create"), ("response", "read")]
    assert all(e["auth"]["display_name"].startswith("jwt-") for e in mine)


def test_both_audit_devices_are_enabled(configured_dev, bao_dev_server):
    devices = _root(bao_dev_server).sys.list_enabled_audit_devices()["data"]
    assert {d["type"] for d in devices.values()} == {"file"} and len(devices) == 2
    assert {d["options"]["file_path"] for d in devices.values()} == {bao_dev_server.audit_log, "stdout"}


def test_audit_devices_through_the_api_for_hashicorp_vault(pulumi_backend, bao_dev_server_api_audit, issuer,
                                                          tmp_path):
    server = bao_dev_server_api_audit
    server.audit_log = str(tmp_path / "api-audit.log")
    s = config_stack(pulumi_backend, server, issuer, adopt_kv=True, flavor="vault")
    try:
        s.up()
        devices = _root(server).sys.list_enabled_audit_devices()["data"]
        assert sorted(devices) == ["file/", "stdout/"]
        assert devices["file/"]["options"]["file_path"] == server.audit_log
        assert os.path.getsize(server.audit_log) > 0
        assert s.changes_of_second_up() == {}
    finally:
        s.destroy()
    assert _root(server).sys.list_enabled_audit_devices()["data"] == {}


# --- the 3-node TLS Raft cluster --------------------------------------------------------------------

def test_raft_cluster_configuration_and_snapshot_operator(pulumi_backend, raft_cluster, issuer):
    s = config_stack(pulumi_backend, raft_cluster, issuer, adopt_kv=False)
    try:
        s.up()
        assert s.changes_of_second_up() == {}
        root = _root(raft_cluster)
        token = root.auth.token.create(policies=["snapshot-operator"], ttl="5m")["auth"]["client_token"]
        snap = requests.get(f"{raft_cluster.address}/v1/sys/storage/raft/snapshot",
                            headers={"X-Vault-Token": token}, verify=raft_cluster.ca_file, timeout=30)
        assert snap.status_code == 200 and len(snap.content) > 1000
        operator = hvac.Client(url=raft_cluster.address, token=token, verify=raft_cluster.ca_file)
        with pytest.raises(Forbidden):
            operator.secrets.kv.v2.read_secret_version(path="users/alice/x", mount_point="secret",
                                                       raise_on_deleted_version=True)
        with pytest.raises(Forbidden):
            operator.sys.list_mounted_secrets_engines()
    finally:
        s.destroy()


# --- bad stack configuration ------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,message", [
    ("vault-envvars:authType", "ldap", "vault-envvars:authType = 'ldap' is not allowed; allowed values: jwt, oidc"),
    ("vault-envvars:jwtAudiences", "[]", "vault-envvars:jwtAudiences must name at least one audience"),
    ("vault-envvars:userTokenTtl", "15 minutes", "vault-envvars:userTokenTtl = '15 minutes' is not a duration"),
    ("vault-envvars:serverFlavor", "consul", "allowed values: openbao, vault"),
])
def test_bad_configuration_fails_preview_naming_the_key(pulumi_backend, bao_dev_server, issuer, key, value, message):
    s = config_stack(pulumi_backend, bao_dev_server, issuer, adopt_kv=True, extra={key: value})
    try:
        with pytest.raises(auto.errors.CommandError) as err:
            s.stack.preview(on_output=lambda _l: None)
        assert message in str(err.value)
    finally:
        s.destroy()
