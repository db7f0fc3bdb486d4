"""Scheduled-snapshot job (infra/snapshot_agent.py) against the real 3-node TLS Raft cluster: it logs in
with the snapshot-operator AppRole the configuration made, saves, verifies, keeps the newest N, and a
snapshot it wrote restores into a fresh cluster with every secret intact."""
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile

import hvac
import pytest
import requests

from devkit.vault_servers import start_raft_cluster
from infra import snapshot_agent
from tests.integration.test_vault_configuration import _config_stack

pytestmark = pytest.mark.integration
AGENT = snapshot_agent.__file__


@pytest.fixture(scope="module")
def configured_raft(pulumi_backend, raft_cluster, tmp_path_factory):
    from devkit.jwt_issuer import TestIssuer

    s = _config_stack(pulumi_backend, raft_cluster, TestIssuer(), adopt_kv=False)
    try:
        outputs = {k: v.value for k, v in s.up().outputs.items()}
        creds = tmp_path_factory.mktemp("snapshot-creds")
        for name in ("snapshot_role_id", "snapshot_secret_id"):
            with open(os.open(creds / name, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(outputs[name])
        yield creds
    finally:
        s.destroy()


def _agent(raft_cluster, creds, folder, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, AGENT, "--vault-addr", raft_cluster.address, "--ca-file", raft_cluster.ca_file,
         "--role-id-file", str(creds / "snapshot_role_id"), "--secret-id-file", str(creds / "snapshot_secret_id"),
         "--dir", str(folder), *extra],
        capture_output=True, text=True, timeout=120)


def test_job_saves_verifies_and_keeps_the_newest(configured_raft, raft_cluster, tmp_path):
    runs = [_agent(raft_cluster, configured_raft, tmp_path, "--retain", "2") for _ in range(3)]
    for r in runs:
        assert r.returncode == 0, r.stdout + r.stderr
        line = json.loads(r.stdout.strip().splitlines()[-1])
        assert line["status"] == "ok" and line["bytes"] > 1000 and line["raft_index"] > 0
    kept = snapshot_agent.snapshots(str(tmp_path))
    assert len(kept) == 2
    for name in kept:
        snapshot_agent.verify_snapshot(str(tmp_path / name))
    assert json.load(open(tmp_path / "status.json"))["status"] == "ok"
    prom = (tmp_path / "snapshot.prom").read_text()
    newest = int(os.path.getmtime(tmp_path / kept[-1]))
    assert "vault_snapshot_last_run_success 1" in prom and f"vault_snapshot_last_success {newest}\n" in prom


def test_a_failed_run_is_visible(configured_raft, raft_cluster, tmp_path):
    bad = tmp_path / "creds"
    bad.mkdir()
    (bad / "snapshot_role_id").write_text((configured_raft / "snapshot_role_id").read_text())
    (bad / "snapshot_secret_id").write_text("not-the-secret-id")
    r = _agent(raft_cluster, bad, tmp_path)
    assert r.returncode == 1
    assert json.loads(r.stdout.strip())["status"] == "failed"
    assert "not-the-secret-id" not in r.stdout + r.stderr
    prom = (tmp_path / "snapshot.prom").read_text()
    # No verified snapshot yet: no last-success time at all (the stale-snapshot alert sees it absent).
    assert "vault_snapshot_last_run_success 0" in prom and "vault_snapshot_last_success" not in prom
    assert snapshot_agent.snapshots(str(tmp_path)) == []


def test_a_tampered_snapshot_fails_verification(configured_raft, raft_cluster, tmp_path):
    assert _agent(raft_cluster, configured_raft, tmp_path).returncode == 0
    (name,) = snapshot_agent.snapshots(str(tmp_path))
    raw = gzip.decompress((tmp_path / name).read_bytes())
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(raw)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name == "state.bin":
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(m, io.BytesIO(data))
    (tmp_path / "tampered.snap").write_bytes(gzip.compress(out.getvalue()))
    with pytest.raises(ValueError, match="checksum mismatch for state.bin"):
        snapshot_agent.verify_snapshot(str(tmp_path / "tampered.snap"))


def test_snapshot_restores_into_a_fresh_cluster(configured_raft, raft_cluster, toolchain, tmp_path):
    root = hvac.Client(url=raft_cluster.address, token=raft_cluster.token, verify=raft_cluster.ca_file)
    values = {f"users/restore/ev{i}": f"value-{i}\nline two = ü" for i in range(20)}
    for path, value in values.items():
        root.secrets.kv.v2.create_or_update_secret(path=path, secret={"value": value}, mount_point="secret")
    assert _agent(raft_cluster, configured_raft, tmp_path).returncode == 0
    (name,) = snapshot_agent.snapshots(str(tmp_path))

    fresh = start_raft_cluster(toolchain["bao"], str(tmp_path / "fresh"))
    try:
        with open(tmp_path / name, "rb") as f:
            r = requests.post(f"{fresh.address}/v1/sys/storage/raft/snapshot-force", data=f,
                              headers={"X-Vault-Token": fresh.token}, verify=fresh.ca_file, timeout=60)
        assert r.status_code == 204, r.text
        active = fresh.reunseal(raft_cluster.unseal_keys)  # sealed again after a forced restore: the ORIGINAL keys
        restored = hvac.Client(url=active, token=raft_cluster.token, verify=fresh.ca_file)
        for path, value in values.items():
            got = restored.secrets.kv.v2.read_secret_version(path=path, mount_point="secret",
                                                             raise_on_deleted_version=True)
            assert got["data"]["data"]["value"] == value
    finally:
        fresh.stop()
