"""Auto seals on real OpenBao processes (a 3-node TLS Raft cluster on loopback), through the bootstrap
resource as the prod stack uses it: OpenBao's static seal (a 32-byte key file) and the transit seal of
another OpenBao (a dev server whose token may only encrypt and decrypt with one key). The bootstrap
initialises with recovery shares (kept as Pulumi secrets, never in clear in the state); a node killed and
started again, and then all three, unseal themselves with no `up`; the recovery shares make a break-glass
root token; with the transit server gone, a restarted node stays sealed (fail closed)."""
import json
import os
import secrets
import time

import hvac
import pytest
import requests
from pulumi import automation as auto

from devkit.stacks import ThrowawayStack
from devkit.vault_servers import TRANSIT_KEY, _start_node, start_raft_cluster, start_transit_server
from infra.clients import vault_ops
from tools.lib.seal_keys import state_keys

pytestmark = pytest.mark.integration


def _bootstrap(pulumi_backend, cluster, seal_type: str) -> tuple[ThrowawayStack, dict]:
    s = ThrowawayStack("integration/programs/bootstrap", dict(pulumi_backend))
    s.stack.set_all_config({"target:nodes": auto.ConfigValue(json.dumps(cluster.nodes)),
                            "target:caCertPem": auto.ConfigValue(cluster.ca_pem),
                            "target:sealType": auto.ConfigValue(seal_type)})
    return s, {k: v.value for k, v in s.up().outputs.items()}


def _restart_and_time(cluster, indexes: list[int]) -> float:
    """Kills the nodes, starts them again, and returns the seconds until every one is unsealed (by itself)
    and one is active."""
    for i in indexes:
        cluster.kill(i)
    started = time.monotonic()
    for i in indexes:
        cluster.start(i)
    vault_ops.wait_until(lambda: not any(vault_ops.seal_status(cluster.nodes[i], cluster.ca_file)["sealed"]
                                         for i in indexes) and vault_ops.active_node(cluster.nodes, cluster.ca_file),
                         90, "the restarted nodes unsealed by themselves, one active", interval=0.2)
    return time.monotonic() - started


def _checks(s: ThrowawayStack, out: dict, cluster, seal_type: str) -> None:
    ca = cluster.ca_file
    assert out["unseal_keys"] == [] and len(out["recovery_keys"]) == 5 and out["root_token"] == ""
    for address in cluster.nodes:
        status = vault_ops.seal_status(address, ca)
        assert (status["type"], status["recovery_seal"], status["sealed"]) == (seal_type, True, False), status
    for key in out["recovery_keys"]:
        assert not s.stored_text_contains(key)
    # Where the tools find them (no output of the prod stack holds them): the state, decrypted in memory.
    assert state_keys(s.name, env=s.env, cwd=s.work_dir) == out["recovery_keys"]
    # A value written now survives every restart below.
    value = secrets.token_hex(16)
    with vault_ops.break_glass_root(cluster.nodes[0], out["recovery_keys"], out["admin_token"], ca) as root:
        c = vault_ops.client(vault_ops.active_node(cluster.nodes, ca), root, ca)
        c.sys.enable_secrets_engine("kv", path="kv", options={"version": "2"})
        vault_ops.wait_until(lambda: c.secrets.kv.v2.create_or_update_secret("probe", {"v": value}, mount_point="kv"),
                             30, "a write to the new mount")
    one = _restart_and_time(cluster, [2])
    every = _restart_and_time(cluster, [0, 1, 2])
    print(f"\n{seal_type} seal on loopback: one node restarted, unsealed by itself in {one:.1f} s; all three "
          f"restarted, unsealed and one active in {every:.1f} s")
    # Serving with the value intact, the cluster whole, and `up` sees nothing to do. Asked of the active node:
    # a standby that has not yet heard of the new leader answers "active cluster node not found" (seen once).
    active = vault_ops.wait_until(lambda: vault_ops.active_node(cluster.nodes, ca), 30, "an active node")
    with vault_ops.break_glass_root(active, out["recovery_keys"], out["admin_token"], ca) as root:
        c = vault_ops.client(active, root, ca)
        assert vault_ops.wait_until(lambda: c.secrets.kv.v2.read_secret_version(
            "probe", mount_point="kv")["data"]["data"]["v"], 30, "the value") == value
        vault_ops.wait_until(lambda: vault_ops.healthy_voters(active, root, ca) == 3, 60, "three healthy voters")
    assert s.changes_of_second_up() == {}


def test_static_seal_recovery_shares_and_nodes_that_unseal_themselves(toolchain, pulumi_backend, tmp_path):
    key_file = tmp_path / "seal.key"
    key_file.write_text(secrets.token_hex(32))  # 64 hex digits: 32 bytes, as the stack's Secret holds it
    os.chmod(key_file, 0o400)
    cluster = start_raft_cluster(toolchain["bao"], str(tmp_path / "raft"), initialize=False, seal_hcl=(
        f'\nseal "static" {{\n  current_key_id = "1"\n  current_key = "file://{key_file}"\n}}\n'))
    try:
        s, out = _bootstrap(pulumi_backend, cluster, "static")
        try:
            _checks(s, out, cluster, "static")
            # The key is in no state file either.
            assert not s.stored_text_contains(key_file.read_text())
        finally:
            s.destroy()
    finally:
        cluster.stop()


def test_transit_seal_of_another_openbao_and_nodes_that_unseal_themselves(toolchain, pulumi_backend, tmp_path):
    transit, token = start_transit_server(toolchain["bao"], str(tmp_path / "transit"))
    cluster = None
    try:
        # The cluster's token may encrypt and decrypt with its key, nothing else (not even read the key).
        narrow = vault_ops.client(transit.address, token)
        assert narrow.secrets.transit.encrypt_data(TRANSIT_KEY, "aGk=", mount_point="transit")["data"]["ciphertext"]
        with pytest.raises(hvac.exceptions.Forbidden):
            narrow.secrets.transit.read_key(TRANSIT_KEY, mount_point="transit")
        with pytest.raises(hvac.exceptions.Forbidden):
            narrow.secrets.transit.create_key("other", mount_point="transit")
        stanza = (f'\nseal "transit" {{\n  address = "{transit.address}"\n  key_name = "{TRANSIT_KEY}"\n'
                  '  mount_path = "transit/"\n}\n')
        cluster = start_raft_cluster(toolchain["bao"], str(tmp_path / "raft"), initialize=False,
                                     env={"BAO_TOKEN": token, "VAULT_TOKEN": token}, seal_hcl=stanza)
        s, out = _bootstrap(pulumi_backend, cluster, "transit")
        try:
            _checks(s, out, cluster, "transit")
            assert not s.stored_text_contains(token)
            # Fail closed: with the transit server gone, a restarted node cannot unseal (OpenBao 2.7.2 does not
            # even start: it cannot set up its seal).
            transit.stop()
            cluster.kill(1)
            cluster.processes[1] = _start_node(cluster.commands[1], cluster.workdir, 1, cluster.env)
            time.sleep(8)
            try:
                unsealed = vault_ops.seal_status(cluster.nodes[1], cluster.ca_file, timeout=3)["sealed"] is False
            except requests.RequestException:
                unsealed = False
            assert not unsealed, "a node unsealed with its transit server gone"
        finally:
            s.destroy()
    finally:
        if cluster:
            cluster.stop()
        transit.stop()
