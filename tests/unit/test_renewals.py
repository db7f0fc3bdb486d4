"""What keeps a running stack's credentials alive, without a server: the certificate's renewal window and
its reissue from the same CA, a renewed file written into a running container instead of replacing it,
the CIDRs the AppRole secret ids are bound to, the settings' validation. The real behaviour over several
lifetimes is tests/e2e/test_time_lapse.py."""
import datetime
from types import SimpleNamespace

import pytest
from cryptography import x509

from infra.providers import docker as docker_provider
from infra.providers.tls import _TlsBundleProvider, seconds_left
from stacks.config import ConfigError, DevConfig, RaftSettings, _Reader, vault_duration
from tests.unit.helpers import run

pytestmark = pytest.mark.unit


def _bundle(valid_seconds: int, renew_before: int, ca_days: int = 3650) -> dict:
    props = {"common_name": "vault", "dns_names": ["vault"], "ip_addresses": ["127.0.0.1"], "days": 365,
             "valid_seconds": valid_seconds, "ca_days": ca_days, "renew_before": renew_before}
    return _TlsBundleProvider().create(props).outs


def test_a_certificate_within_its_window_is_renewed_from_the_same_ca():
    p = _TlsBundleProvider()
    fresh = _bundle(3600, 600)
    assert p.diff("id", fresh, {**fresh}).changes is False  # an hour left, a 10-minute window: nothing to do
    due = _bundle(300, 600)
    assert p.diff("id", due, {**due}).changes is True
    renewed = p.update("id", due, {**due, "valid_seconds": 3600}).outs
    assert renewed["ca_pem"] == due["ca_pem"] and renewed["cert_pem"] != due["cert_pem"]
    cert = x509.load_pem_x509_certificate(renewed["cert_pem"].encode())
    ca = x509.load_pem_x509_certificate(renewed["ca_pem"].encode())
    cert.verify_directly_issued_by(ca)
    assert 3000 < seconds_left(renewed["cert_pem"]) <= 3600
    assert seconds_left(renewed["ca_pem"]) > 3000 * 86400  # the CA outlives its certificates


def test_a_ca_within_the_window_is_made_anew():
    p = _TlsBundleProvider()
    due = _bundle(300, 600, ca_days=0)  # the CA lives as long as its certificate: both due
    renewed = p.update("id", due, {**due}).outs
    assert renewed["ca_pem"] != due["ca_pem"]


def test_no_window_no_renewal():
    p = _TlsBundleProvider()
    old = _bundle(60, 0)
    assert p.diff("id", old, {**old}).changes is False


def _container(files: dict, reloadable: list) -> dict:
    return {**{k: None for k in docker_provider.CONTAINER_INPUTS}, "name": "n", "image": "i",
            "files": files, "reloadable_files": reloadable, "reload_signal": "SIGHUP"}


def test_a_reloadable_file_changes_the_running_container_in_place():
    p = docker_provider._ContainerProvider()
    old = _container({"/c/tls.crt": {"content": "a", "mode": 0o444}, "/c/server.hcl": {"content": "x"}},
                     ["/c/tls.crt"])
    renewed = _container({"/c/tls.crt": {"content": "b", "mode": 0o444}, "/c/server.hcl": {"content": "x"}},
                         ["/c/tls.crt"])
    d = p.diff("id", old, renewed)
    assert d.changes is True and not d.replaces
    assert docker_provider._changed_files(old, renewed) == {"/c/tls.crt": {"content": "b", "mode": 0o444}}
    reconfigured = _container({"/c/tls.crt": {"content": "a", "mode": 0o444}, "/c/server.hcl": {"content": "y"}},
                              ["/c/tls.crt"])
    assert p.diff("id", old, reconfigured).replaces == ["files"]  # any other file: a new container


def test_credentials_are_bound_to_the_network_less_its_gateway():
    net = SimpleNamespace(attrs={"IPAM": {"Config": [{"Subnet": "10.89.3.0/24", "Gateway": "10.89.3.1"},
                                                     {"Subnet": "fd00::/64"}]}})
    cidrs = docker_provider.container_cidrs(net)
    import ipaddress
    covered = {a for c in cidrs for a in ipaddress.ip_network(c)}
    assert ipaddress.ip_address("10.89.3.1") not in covered  # the host's connections arrive from there
    assert ipaddress.ip_address("10.89.3.2") in covered and len(covered) == 254  # .0: the network's address


class _Config:
    def __init__(self, values: dict):
        self.values = values

    def get(self, key):
        return self.values.get(key)

    def get_secret(self, key):  # the stack's secrets (DevConfig reads the backup ones)
        return self.values.get(key)


def test_lifetime_settings_are_validated():
    assert RaftSettings.load(_Reader(_Config({}))).admin_token_period == 768 * 3600
    assert RaftSettings.load(_Reader(_Config({"adminTokenPeriod": "40s", "snapshotInterval": "10s"}))) \
        .admin_token_period == 40
    with pytest.raises(ConfigError, match="adminTokenPeriod"):
        RaftSettings.load(_Reader(_Config({"adminTokenPeriod": "5s"})))
    cfg = DevConfig.load(_Config({"tlsValidity": "40s", "tlsRenewBefore": "35s"}))
    assert (cfg.tls_validity, cfg.tls_renew_before) == (40, 35)
    with pytest.raises(ConfigError, match="tlsRenewBefore"):
        DevConfig.load(_Config({"tlsValidity": "30d", "tlsRenewBefore": "45d"}))
    assert (vault_duration(768 * 3600), vault_duration(40)) == ("768h", "40s")


def test_seconds_left_of_an_expired_certificate_is_negative():
    b = _bundle(1, 0)
    assert seconds_left(b["cert_pem"]) < 1
    assert datetime.timedelta(seconds=seconds_left(b["cert_pem"])) < datetime.timedelta(seconds=1)



def test_the_rollout_checksum_follows_what_the_pods_read(mocks):
    from infra.service_k8s import checksum
    seen: list[str] = []

    def program():
        for value in ({"a": "1"}, {"a": "1"}, {"a": "2"}):
            checksum(value, {"env": "x"}).apply(seen.append)
    run(program)
    assert seen[0] == seen[1] != seen[2]
