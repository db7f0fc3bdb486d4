"""The Raft outage drills of tools/raft_drills.py on a 3-node TLS cluster of real OpenBao processes on
loopback, each drill on a cluster of its own (it breaks it on purpose)."""
import json
import os
import secrets

import hvac
import pytest

from devkit.vault_servers import start_raft_cluster
from tools import raft_drills
from tools.lib.raft_nodes import active_node

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(toolchain, tmp_path):
    server = start_raft_cluster(toolchain["bao"], str(tmp_path / "raft"))
    yield server
    server.stop()


def _seed(server, count: int = 60, mount: str = "secret") -> dict[str, str]:
    """Env-var-like values of three users, where the service keeps them."""
    c = hvac.Client(url=server.address, token=server.token, verify=server.ca_file)
    c.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    values = {}
    for n in range(count):
        path = f"users/user-{n % 3}/{secrets.token_hex(8)}"
        values[path] = f"value-{n}-{secrets.token_urlsafe(12)}"
        c.secrets.kv.v2.create_or_update_secret(path, {"value": values[path]}, mount_point=mount)
    return values


def _read_all(server, values: dict[str, str], mount: str = "secret") -> dict[str, str]:
    active = server.nodes[active_node(server)]
    c = hvac.Client(url=active, token=server.token, verify=server.ca_file)
    return {p: c.secrets.kv.v2.read_secret_version(p, mount_point=mount, raise_on_deleted_version=True)
            ["data"]["data"]["value"] for p in values}


def test_quorum_loss_recovered_with_peers_json_on_the_survivor(cluster, tmp_path):
    values = _seed(cluster)
    out = str(tmp_path / "reports")
    code, report = raft_drills.run("quorum-loss", cluster, cluster.token, cluster.unseal_keys, out, 2)
    assert code == 0, report
    assert report["outage_confirmed"] is True  # the lone survivor refused writes before the recovery
    assert report["verified_on_survivor"] == report["values_verified"] == len(values)
    print(f"\nquorum loss: survivor serving after {report['rto_seconds']} s, three voters after "
          f"{report['seconds_to_full_cluster']} s more")
    # Two nodes gone for good, recovered: every secret readable, byte for byte, on a three-voter cluster.
    assert _read_all(cluster, values) == values
    voters = hvac.Client(url=cluster.nodes[active_node(cluster)], token=cluster.token,
                         verify=cluster.ca_file).sys.read_raft_config()["data"]["config"]["servers"]
    assert sorted(s["node_id"] for s in voters if s["voter"]) == ["node1", "node2", "node3"]
    (report_json,) = [f for f in os.listdir(out) if f.endswith(".json")]
    assert json.load(open(os.path.join(out, report_json)))["passed"] is True
    assert any(f.endswith(".md") for f in os.listdir(out))


def test_node_loss_the_active_node_killed_recovered_and_rejoined(cluster, tmp_path):
    values = _seed(cluster, 30, mount="env-kv")  # a stack's kvPath other than the default
    code, report = raft_drills.run("node-loss", cluster, cluster.token, cluster.unseal_keys, str(tmp_path), -1,
                                   kv_mount="env-kv")
    assert code == 0, report
    assert report["was_active"] is True and report["values_verified"] == len(values)
    print(f"\nnode loss: a write after {report['seconds_to_first_write']} s, rejoined after "
          f"{report['seconds_to_rejoin']} s")
    assert _read_all(cluster, values, mount="env-kv") == values
