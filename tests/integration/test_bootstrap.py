"""The bootstrap resource on a real, uninitialised 3-node TLS Raft cluster: initialise, unseal all,
config-admin token, root revoked; a restarted node is seen sealed by preview and unsealed by `up`."""
import json

import hvac
import pytest
from pulumi import automation as auto

from devkit.stacks import ThrowawayStack
from devkit.vault_servers import start_raft_cluster
from infra.clients import vault_ops

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fresh_cluster(toolchain, tmp_path_factory):
    server = start_raft_cluster(toolchain["bao"], str(tmp_path_factory.mktemp("bao-boot")), initialize=False)
    yield server
    server.stop()


def test_bootstrap_prod_style(pulumi_backend, fresh_cluster):
    s = ThrowawayStack("integration/programs/bootstrap", dict(pulumi_backend))
    s.stack.set_all_config({"target:nodes": auto.ConfigValue(json.dumps(fresh_cluster.nodes)),
                            "target:caCertPem": auto.ConfigValue(fresh_cluster.ca_pem)})
    try:
        out = {k: v.value for k, v in s.up().outputs.items()}
        assert len(out["unseal_keys"]) == 5 and out["root_token"] == ""
        for address in fresh_cluster.nodes:
            c = hvac.Client(url=address, verify=fresh_cluster.ca_file)
            assert c.sys.read_seal_status()["sealed"] is False
        admin = hvac.Client(url=fresh_cluster.nodes[0], token=out["admin_token"], verify=fresh_cluster.ca_file)
        me = admin.auth.token.lookup_self()["data"]
        assert me["policies"] == ["config-admin", "default"] and me["period"] > 0 and me["orphan"] is True
        # Root is gone: the admin can read its policy but not widen it, nor read the token store.
        with pytest.raises(hvac.exceptions.Forbidden):
            admin.sys.create_or_update_policy("config-admin", 'path "*" { capabilities = ["sudo"] }')
        # Break-glass: the config-admin token and a quorum of keys make a root token, revoked afterwards;
        # fewer keys, or no token allowed to ask, make none.
        with vault_ops.break_glass_root(fresh_cluster.nodes[0], out["unseal_keys"], out["admin_token"],
                                        fresh_cluster.ca_file) as root:
            c = hvac.Client(url=fresh_cluster.nodes[0], token=root, verify=fresh_cluster.ca_file)
            assert c.auth.token.lookup_self()["data"]["policies"] == ["root"]
        with pytest.raises(hvac.exceptions.Forbidden):
            c.auth.token.lookup_self()
        with pytest.raises(RuntimeError, match="not enough unseal keys"):
            with vault_ops.break_glass_root(fresh_cluster.nodes[0], out["unseal_keys"][:2], out["admin_token"],
                                            fresh_cluster.ca_file):
                pass
        with pytest.raises(hvac.exceptions.Forbidden):
            with vault_ops.break_glass_root(fresh_cluster.nodes[0], out["unseal_keys"], "s.not-a-token",
                                            fresh_cluster.ca_file):
                pass
        for key in out["unseal_keys"]:
            assert not s.stored_text_contains(key)
        assert not s.stored_text_contains(out["admin_token"])
        assert s.changes_of_second_up() == {}

        fresh_cluster.kill(2)
        fresh_cluster.start(2)
        assert hvac.Client(url=fresh_cluster.nodes[2], verify=fresh_cluster.ca_file).sys.read_seal_status()["sealed"]
        assert s.stack.preview(on_output=lambda _l: None).change_summary.get("update") == 1
        s.up()
        assert hvac.Client(url=fresh_cluster.nodes[2], verify=fresh_cluster.ca_file).sys.read_seal_status()["sealed"] \
            is False
    finally:
        s.destroy()


def test_a_cluster_initialised_elsewhere_is_refused(pulumi_backend, raft_cluster):
    s = ThrowawayStack("integration/programs/bootstrap", dict(pulumi_backend))
    s.stack.set_all_config({"target:nodes": auto.ConfigValue(json.dumps(raft_cluster.nodes)),
                            "target:caCertPem": auto.ConfigValue(raft_cluster.ca_pem)})
    try:
        with pytest.raises(auto.errors.CommandError, match="already initialised: this stack did not create it"):
            s.up()
    finally:
        s.destroy()
