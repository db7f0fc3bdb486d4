"""Disaster-recovery drills against a real dev stack in raft mode holding 1,000 env vars of several users,
created through the service: the restore drill (tools/drill.py) passes and reports RTO; one restoring a
snapshot taken before a secret changed reports that env var and fails; the node-loss and quorum-loss
drills (tools/raft_drills.py) pass on the stack's containers."""
import json

import docker
import pytest
import requests
from pulumi import automation as auto

from tools import drill as drill_tool
from tools import raft_drills
from tools.dev_token import id_token
from tools.lib.raft_nodes import DockerNodes

pytestmark = pytest.mark.e2e
IMAGE = "localhost/vault-envvars/openbao:2.7.2"


@pytest.fixture(scope="module")
def raft_stack(pulumi_backend, tmp_path_factory):
    from devkit.stacks import ThrowawayStack

    s = ThrowawayStack("e2e/programs/dev_stack", dict(pulumi_backend))
    s.stack.set_config("vault-envvars:vaultMode", auto.ConfigValue("raft"))
    s.stack.set_config("vault-envvars:serviceRateLimit", auto.ConfigValue("100000/minute"))
    try:
        out = {k: v.value for k, v in s.up().outputs.items()}
        ca = str(tmp_path_factory.mktemp("drill") / "ca.pem")
        with open(ca, "w") as f:
            f.write(out["vault_ca_cert"])
        out["ca_file"] = ca
        ids = {}
        for user in ("alice", "bob"):
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {id_token(out, user, out['ca_file'])}"
            for i in range(500):
                r = session.post(f"{out['service_url']}/api/v2/user/env-vars",
                                 json={"name": f"VAR_{i}", "value": f"{user} value {i}\nline two"}, timeout=10)
                assert r.status_code == 201, r.text
                ids[(user, i)] = r.json()["id"]
        yield s, out, ids
    finally:
        s.destroy()


def test_drill_restores_every_value(raft_stack, tmp_path):
    s, out, _ = raft_stack
    code, report = drill_tool.drill(out, s.name, str(tmp_path), IMAGE)
    print(f"\ndrill: RTO {report.get('rto_seconds')} s, {report.get('values_verified')} values verified, "
          f"snapshot {report.get('snapshot_bytes')} bytes")
    assert code == 0, report
    assert report["passed"] and report["values_verified"] == report["env_vars_in_database"] == 1000
    assert report["rto_seconds"] > 0 and not report["mismatched"]
    # The service's own check, on its restored database backup and the restored cluster, finds no drift.
    assert report["service_check"] == {"rows": 1000, "values": 1000, "rows_without_value": 0,
                                       "values_without_row": 0, "rows_with_another_vault_path": 0}
    (md,) = tmp_path.glob("*.md")
    assert "PASSED" in md.read_text() and "RTO" in md.read_text()
    saved = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert "alice value" not in json.dumps(saved)  # hashes and ids, never values


def test_a_value_changed_after_the_snapshot_is_reported(raft_stack, tmp_path):
    s, out, ids = raft_stack
    ca = out["ca_file"]
    snapshot = str(tmp_path / "before.snap")
    drill_tool.take_snapshot(out, ca, snapshot, (out["snapshot_role_id"], out["snapshot_secret_id"]))
    changed = ids[("bob", 7)]
    r = requests.put(f"{out['service_url']}/api/v2/user/env-vars/{changed}", json={"value": "changed later"},
                     headers={"Authorization": f"Bearer {id_token(out, 'bob', ca)}"}, timeout=10)
    assert r.status_code == 200
    code, report = drill_tool.drill(out, s.name, str(tmp_path / "reports"), IMAGE, snapshot_file=snapshot)
    assert code == 1 and report["passed"] is False
    assert [m.split("/")[-1] for m in report["mismatched"]] == [changed]


def test_node_loss_and_quorum_loss_drills_on_the_stacks_containers(raft_stack, toolchain, tmp_path):
    """The outage drills of tools/raft_drills.py through the containers' interface (kill, start, peers.json
    copied into a stopped container, data volume wiped by a helper container); last in this module, as they
    leave the cluster rebuilt."""
    s, out, _ = raft_stack
    nodes = DockerNodes(s.name, out, out["ca_file"], docker.DockerClient(base_url=toolchain["docker_host"]))
    code, report = raft_drills.run("node-loss", nodes, out["vault_root_token"], out["vault_unseal_keys"],
                                   str(tmp_path / "node"), -1)
    assert code == 0, report
    assert report["was_active"] and report["values_verified"] == 1000
    code, report = raft_drills.run("quorum-loss", nodes, out["vault_root_token"], out["vault_unseal_keys"],
                                   str(tmp_path / "quorum"), 1)
    assert code == 0, report
    assert report["outage_confirmed"] and report["verified_on_survivor"] == report["values_verified"] == 1000
    # The service works on the rebuilt cluster.
    alice = {"Authorization": f"Bearer {id_token(out, 'alice', out['ca_file'])}"}
    assert requests.get(f"{out['service_url']}/api/v2/user/env-vars?limit=1", headers=alice,
                        timeout=10).json()["total"] == 500
