"""The dynamic providers' pure logic, no engine and no server: input diffing, the engine's numbers made
whole again, Vault's spellings made comparable, the bootstrap's diff and its secret-free errors, and
the CA handling every Vault client shares."""
import os

import hvac
import pytest

from infra.clients import vault_ops
from infra.providers import vault_bootstrap
from infra.providers.base import ManagedProvider, inputs_of, plain
from infra.providers.docker import context_digest
from infra.providers.vault import _normalise, _seconds

pytestmark = pytest.mark.unit


class _Provider(ManagedProvider):
    managed = ("name", "size", "labels")
    replace_on = ("name",)


# --- ManagedProvider.diff --------------------------------------------------------------------------

def test_same_inputs_are_no_change():
    olds = {"name": "a", "size": 1, "labels": {"x": "1"}, "unmanaged": "old"}
    r = _Provider().diff("id", olds, {**olds, "unmanaged": "new"})  # only managed inputs count
    assert (r.changes, r.replaces, r.delete_before_replace) == (False, [], False)


def test_a_managed_input_changed_is_an_update_in_place():
    r = _Provider().diff("id", {"name": "a", "size": 1}, {"name": "a", "size": 2})
    assert (r.changes, r.replaces, r.delete_before_replace) == (True, [], False)


def test_a_replace_on_input_changed_replaces_deleting_first():
    r = _Provider().diff("id", {"name": "a", "size": 1}, {"name": "b", "size": 2})
    assert (r.changes, r.replaces, r.delete_before_replace) == (True, ["name"], True)


@pytest.mark.parametrize("empty", [None, "", [], {}, 0, False])
def test_an_input_gained_later_left_empty_is_no_change(empty):
    # A resource made by an older provider has no such input in its state: no replace for it.
    r = _Provider().diff("id", {"name": "a", "size": 1}, {"name": "a", "size": 1, "labels": empty})
    assert r.changes is False


def test_an_input_gained_later_with_a_value_is_a_change():
    r = _Provider().diff("id", {"name": "a", "size": 1}, {"name": "a", "size": 1, "labels": {"x": "1"}})
    assert r.changes is True and r.replaces == []


def test_an_input_emptied_is_a_change():
    r = _Provider().diff("id", {"name": "a", "labels": {"x": "1"}}, {"name": "a", "labels": {}})
    assert r.changes is True



def test_a_moved_connection_follows_in_place_and_keeps_the_outputs():
    # The same cluster behind new host ports (its nodes replaced): the state must take the new address,
    # or a later delete reaches the old one; nothing is re-created (a mount's replace would drop its data).
    from infra.providers.vault import _AppRoleCredentialProvider, _MountProvider
    olds = {"path": "secret", "type": "kv", "kind": "secret", "address": "https://127.0.0.1:1", "token": "t",
            "ca_cert_pem": "ca"}
    r = _MountProvider().diff("id", olds, {**olds, "address": "https://127.0.0.1:2"})
    assert (r.changes, r.replaces, r.delete_before_replace) == (True, [], False)
    cred = {"mount": "approle", "role": "executor", "metadata": {}, "address": "a1", "token": "t",
            "ca_cert_pem": "ca", "role_id": "r", "secret_id": "s"}
    p = _AppRoleCredentialProvider()
    assert p.diff("id", cred, {**cred, "address": "a2"}).replaces == []
    assert p.update("id", cred, {**cred, "address": "a2", "secret_id": None}).outs == {**cred, "address": "a2"}
    assert _Provider().diff("id", {"name": "a", "address": "x"}, {"name": "a", "address": "y"}).changes is False
    # A rotated token is no change (a narrower one may not be allowed to re-apply what the first made).
    assert _MountProvider().diff("id", olds, {**olds, "token": "t2"}).changes is False


def test_a_moved_location_writes_nothing_to_the_server():
    from infra.providers.vault import _EndpointProvider
    olds = {"path": "sys/policies/acl/x", "data": {"policy": "p"}, "address": "unreachable:1", "token": "t",
            "ca_cert_pem": ""}
    # No server answers at either address: an update that tried to write would raise.
    result = _EndpointProvider().update("id", olds, {**olds, "address": "unreachable:2"})
    assert result.outs == {**olds, "address": "unreachable:2"}


# --- plain, inputs_of ------------------------------------------------------------------------------

def test_plain_gives_whole_numbers_back_as_ints_deeply():
    got = plain({"a": 3.0, "b": [1.0, 2.5, {"c": 0.0}], "d": "3.0", "e": True, "f": None})
    assert got == {"a": 3, "b": [1, 2.5, {"c": 0}], "d": "3.0", "e": True, "f": None}
    assert type(got["a"]) is int and type(got["b"][1]) is float and type(got["b"][2]["c"]) is int
    assert got["e"] is True  # a bool is no float


def test_inputs_of_names_every_input_missing_ones_as_none():
    assert inputs_of({"a": 1, "b": 2}, ("a", "c")) == {"a": 1, "c": None}


# --- Vault's spellings -----------------------------------------------------------------------------

@pytest.mark.parametrize("live, declared, expected", [
    (3600, 3600.0, 3600.0),  # the engine's float: compared as the declared type
    (3600.0, 3600, 3600),
    (None, [], []),  # Vault leaves out an empty list...
    (None, "", ""),  # ...and an empty string
    (["a"], [], ["a"]),
    ("x", "y", "x"),
    (None, None, None),
])
def test_normalise(live, declared, expected):
    got = _normalise(live, declared)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("ttl, seconds", [("", 0), (None, 0), ("0", 0), ("3600", 3600), ("90s", 90),
                                          ("15m", 900), ("1h", 3600), ("7d", 604800)])
def test_seconds(ttl, seconds):
    assert _seconds(ttl) == seconds


# --- the image's build context ---------------------------------------------------------------------

def test_context_digest_follows_names_and_contents(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print(1)")
    first = context_digest(str(tmp_path))
    assert context_digest(str(tmp_path)) == first
    (tmp_path / "app" / "main.py").write_text("print(2)")
    assert context_digest(str(tmp_path)) != first
    (tmp_path / "app" / "main.py").write_text("print(1)")
    (tmp_path / "app" / "main.py").rename(tmp_path / "app" / "other.py")
    assert context_digest(str(tmp_path)) != first


def test_context_digest_ignores_bytecode_caches(tmp_path):
    (tmp_path / "main.py").write_text("print(1)")
    first = context_digest(str(tmp_path))
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "main.pyc").write_bytes(b"\0")
    assert context_digest(str(tmp_path)) == first


# --- the bootstrap ---------------------------------------------------------------------------------

BOOT = {"node_addresses": ["https://127.0.0.1:1"], "ca_cert_pem": "", "admin_policy": "p", "revoke_root": True,
        "admin_token_period": "768h", "key_shares": 5.0, "key_threshold": 3.0,
        "unseal_keys": ["k1", "k2", "k3"], "root_token": "", "admin_token": "t"}


@pytest.mark.parametrize("key", ["key_shares", "key_threshold"])
def test_the_bootstrap_refuses_new_key_shares_or_threshold(key):
    with pytest.raises(vault_bootstrap.BootstrapError, match=f"{key} cannot change after initialisation"):
        vault_bootstrap._BootstrapProvider().diff("bootstrap", BOOT, {**BOOT, key: 7.0})


def test_the_bootstrap_shows_sealed_nodes_as_a_change(monkeypatch):
    sealed: list[str] = []
    monkeypatch.setattr(vault_ops, "sealed_nodes", lambda nodes, ca: sealed)
    provider = vault_bootstrap._BootstrapProvider()
    assert provider.diff("bootstrap", BOOT, dict(BOOT)).changes is False
    sealed.append(BOOT["node_addresses"][0])
    assert provider.diff("bootstrap", BOOT, dict(BOOT)).changes is True


def test_a_node_that_does_not_answer_is_not_sealed():
    assert vault_ops.sealed_nodes(["http://127.0.0.1:1"]) == []  # nothing listens on port 1


def test_vaults_refusal_is_a_bootstrap_error_with_its_message_and_no_secret():
    refusal = hvac.exceptions.InvalidRequest(errors=["invalid key"], method="PUT",
                                             url="https://127.0.0.1:8200/v1/sys/unseal")
    with pytest.raises(vault_bootstrap.BootstrapError) as e:
        with vault_bootstrap._vault_says("sys/unseal", "https://127.0.0.1:8200"):
            raise refusal
    assert str(e.value) == "sys/unseal on https://127.0.0.1:8200: InvalidRequest: invalid key"
    assert e.value.__cause__ is None and e.value.__suppress_context__


# --- the CA of every Vault client ------------------------------------------------------------------

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("ca", [None, "", True])
def test_no_ca_is_the_systems(ca):
    assert vault_ops.ca_verify(ca) is True


def test_a_ca_file_is_used_as_it_is():
    assert vault_ops.ca_verify("/etc/ssl/some-ca.pem") == "/etc/ssl/some-ca.pem"


def test_a_ca_pem_becomes_one_file_per_ca():
    path = vault_ops.ca_verify(PEM)
    assert open(path).read() == PEM and vault_ops.ca_verify(PEM) == path
    assert vault_ops.ca_verify(PEM.replace("MIIB", "MIIC")) != path


def test_the_client_ignores_the_environments_ca_bundle_and_token(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    monkeypatch.setenv("VAULT_TOKEN", "from-the-environment")
    c = vault_ops.client("https://127.0.0.1:8200", ca=PEM, timeout=7)
    assert c.adapter.session.trust_env is False and not c.token
    assert c.adapter._kwargs["verify"] == vault_ops.ca_verify(PEM) and c.adapter._kwargs["timeout"] == 7
    assert os.path.exists(c.adapter._kwargs["verify"])


# --- docker: copying files into a created container ------------------------------------------------

class _FlakyContainer:
    name = "c"

    def __init__(self, failures: int, status: int = 500):
        self.failures, self.status, self.calls = failures, status, 0

    def put_archive(self, directory, data):
        import docker as docker_sdk

        self.calls += 1
        if self.calls <= self.failures:
            response = type("R", (), {"status_code": self.status, "reason": "x"})()
            raise docker_sdk.errors.APIError("broken pipe", response=response)
        return True


def test_a_copy_the_engine_failed_with_a_500_is_sent_again():
    from infra.providers.docker import copy_files
    flaky = _FlakyContainer(failures=2)
    copy_files(flaky, {"/d/f": {"content": "x"}}, "100:1000")
    assert flaky.calls == 3


def test_a_copy_refused_otherwise_or_failing_every_time_raises():
    import docker as docker_sdk

    from infra.providers.docker import copy_files
    for flaky in (_FlakyContainer(failures=1, status=404), _FlakyContainer(failures=3)):
        with pytest.raises(docker_sdk.errors.APIError):
            copy_files(flaky, {"/d/f": {"content": "x"}}, "100:1000")
