"""Scheduled-snapshot job (infra/agents/snapshot_agent.py) against the real 3-node TLS Raft cluster: it logs in
with the snapshot-operator AppRole the configuration made, saves, verifies, keeps the newest N, and a
snapshot it wrote restores into a fresh cluster with every secret intact."""
import gzip
import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile

import hvac
import pytest
import requests

from devkit.vault_servers import start_raft_cluster
from infra.agents import snapshot_agent
from tests.integration.helpers import config_stack

pytestmark = pytest.mark.integration
AGENT = snapshot_agent.__file__


@pytest.fixture(scope="module")
def configured_raft(pulumi_backend, raft_cluster, tmp_path_factory):
    from devkit.jwt_issuer import TestIssuer

    s = config_stack(pulumi_backend, raft_cluster, TestIssuer(), adopt_kv=False)
    try:
        outputs = {k: v.value for k, v in s.up().outputs.items()}
        creds = tmp_path_factory.mktemp("snapshot-creds")
        for name in ("snapshot_role_id", "snapshot_secret_id", "executor_role_id", "executor_secret_id"):
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


# --- off the cluster: an S3-compatible bucket (infra/agents/backup_store.py) on a real S3 server -----------------

def _store_files(s3_server, tmp_path, bucket: str, prefix: str = "stack-a/", ca_file: str = "") -> list[str]:
    """The agent's store options for this bucket; the key file holds a fresh 32-byte key."""
    import base64
    import secrets as _secrets

    files = tmp_path / "store"
    files.mkdir(exist_ok=True)
    (files / "store.json").write_text(json.dumps({"bucket": bucket, "prefix": prefix, "endpoint": s3_server.endpoint,
                                                  "region": s3_server.region, "ca_file": ca_file}))
    (files / "creds.json").write_text(json.dumps({"access_key_id": s3_server.access_key_id,
                                                  "secret_access_key": s3_server.secret_access_key}))
    if not (files / "backup.key").exists():
        (files / "backup.key").write_text(base64.b64encode(_secrets.token_bytes(32)).decode())
    return ["--store-config", str(files / "store.json"), "--store-credentials", str(files / "creds.json"),
            "--key-file", str(files / "backup.key")]


def _canary_sqlite(path, canary: str) -> None:
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")  # as the service has it
    db.execute("CREATE TABLE IF NOT EXISTS env_vars (name TEXT, description TEXT)")
    db.execute("INSERT INTO env_vars VALUES (?, ?)", ("CANARY_VAR", canary))
    db.commit()
    db.close()


def test_uploads_are_encrypted_verified_and_pruned_by_tiers(configured_raft, raft_cluster, s3_server, tmp_path):
    import secrets as _secrets
    import sqlite3
    import time

    from infra.agents import backup_store as bs

    bucket = s3_server.create_bucket()
    canary = "canary-" + _secrets.token_hex(12)
    _canary_sqlite(tmp_path / "envvars.db", canary)
    store = _store_files(s3_server, tmp_path, bucket)
    # Shortened tiers: the newest of each of the 2 newest 1-second slots, and of the 2 newest 4-second slots.
    tiers = ["--tier", "1:2", "--tier", "4:2"]
    (tmp_path / "local").mkdir()
    uploaded, dumps = [], []
    for _ in range(7):  # several cycles of the shortest tier
        r = _agent(raft_cluster, configured_raft, tmp_path / "local", *store, *tiers,
                   "--sqlite-file", str(tmp_path / "envvars.db"), "--no-local-copy")
        assert r.returncode == 0, r.stdout + r.stderr
        line = json.loads(r.stdout.strip().splitlines()[-1])
        assert line["status"] == "ok" and line["object"].startswith("stack-a/snapshots/")
        assert line["db_object"].startswith("stack-a/database/") and line["db_object"].endswith(".sqlite.enc")
        uploaded.append(line["object"])
        dumps.append(line["db_object"])
        time.sleep(1.1)
    assert canary not in r.stdout + r.stderr
    assert snapshot_agent.snapshots(str(tmp_path / "local")) == []  # --no-local-copy

    settings = bs.StoreSettings(bucket=bucket, prefix="stack-a/", endpoint=s3_server.endpoint,
                                access_key_id=s3_server.access_key_id, secret_access_key=s3_server.secret_access_key)
    s3 = bs.client(settings)
    kept = bs.list_backups(s3, settings, "snapshots")
    assert kept == sorted(bs.to_keep(uploaded, [(1, 2), (4, 2)])) and uploaded[-1] in kept
    assert 2 <= len(kept) < len(uploaded)
    assert bs.list_backups(s3, settings, "database") == sorted(bs.to_keep(dumps, [(1, 2), (4, 2)]))

    # Encrypted before it left: neither the bucket's bytes nor the server's folder hold the canary or a
    # readable snapshot; the key (kept outside the bucket) gives both back.
    key = bs.load_key(str(tmp_path / "store" / "backup.key"))
    newest_db = bs.list_backups(s3, settings, "database")[-1]
    raw_db = s3.get_object(Bucket=bucket, Key=newest_db)["Body"].read()
    assert canary.encode() not in raw_db and raw_db.startswith(bs.MAGIC)
    on_disk = b"".join(p.read_bytes() for p in pathlib.Path(s3_server.folder).rglob("*") if p.is_file())
    assert len(on_disk) > 1000 and canary.encode() not in on_disk
    (tmp_path / "restored.db").write_bytes(bs.fetch(s3, settings, key, newest_db))
    got = sqlite3.connect(tmp_path / "restored.db").execute("SELECT description FROM env_vars").fetchone()
    assert got == (canary,)
    raw_snap = s3.get_object(Bucket=bucket, Key=kept[-1])["Body"].read()
    assert not raw_snap[len(bs.MAGIC) + bs.NONCE_BYTES:].startswith(b"\x1f\x8b")  # not a gzip'd snapshot
    (tmp_path / "restored.snap").write_bytes(bs.fetch(s3, settings, key, kept[-1]))
    assert snapshot_agent.verify_snapshot(str(tmp_path / "restored.snap"))["index"] > 0
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):  # another key (or another object's name) does not decrypt it
        bs.decrypt(bytes(32), kept[-1], raw_snap)
    with pytest.raises(InvalidTag):
        bs.decrypt(key, kept[0], raw_snap)

    prom = (tmp_path / "local" / "snapshot.prom").read_text()
    assert "vault_snapshot_last_run_success 1" in prom
    assert "vault_snapshot_last_success " in prom and "envvars_db_backup_last_success " in prom


def test_a_failed_upload_flips_the_metric(configured_raft, raft_cluster, s3_server, tmp_path):
    bucket = s3_server.create_bucket()
    store = _store_files(s3_server, tmp_path, bucket)
    ok = _agent(raft_cluster, configured_raft, tmp_path, *store)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    before = (tmp_path / "snapshot.prom").read_text()
    last = [ln for ln in before.splitlines() if ln.startswith("vault_snapshot_last_success ")]
    assert last and "vault_snapshot_last_run_success 1" in before

    s3_server.stop()
    try:
        r = _agent(raft_cluster, configured_raft, tmp_path, *store)
    finally:
        s3_server.start()
    assert r.returncode == 1
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert line["status"] == "failed" and "Connect" in line["error"]
    assert s3_server.secret_access_key not in r.stdout + r.stderr
    prom = (tmp_path / "snapshot.prom").read_text()
    # The run failed (VaultSnapshotFailing) and the last success stays the last verified upload's time,
    # not the local copy this run still made (VaultSnapshotStale counts from it).
    assert "vault_snapshot_last_run_success 0" in prom
    assert [ln for ln in prom.splitlines() if ln.startswith("vault_snapshot_last_success ")] == last


def test_a_private_endpoint_is_trusted_through_its_ca_only(configured_raft, raft_cluster, tmp_path):
    from devkit.s3_server import start_s3_server

    private = start_s3_server(str(tmp_path / "private-s3"), tls=True)
    try:
        bucket = private.create_bucket()
        untrusted = _agent(raft_cluster, configured_raft, tmp_path, *_store_files(private, tmp_path, bucket))
        assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stdout, untrusted.stdout
        trusted = _agent(raft_cluster, configured_raft, tmp_path,
                         *_store_files(private, tmp_path, bucket, ca_file=private.ca_file))
        assert trusted.returncode == 0, trusted.stdout + trusted.stderr
        assert json.loads(trusted.stdout.strip().splitlines()[-1])["object"].startswith("stack-a/snapshots/")
    finally:
        private.stop()


# --- the restore check (infra/agents/restore_check.py): the newest backups in the bucket, restored and verified --

RESTORE = os.path.join(os.path.dirname(AGENT), "restore_check.py")


@pytest.fixture(scope="module")
def pg_for_backups():
    from devkit.postgres import remove, start_postgres

    server = start_postgres()
    yield server
    remove(server)


def _service_data(raft_cluster, database_url: str, canary: str, count: int = 12) -> dict[str, str]:
    """The service's metadata (its real schema, migrated) and the values in Vault where its rows say."""
    from service.db import EnvVar, kv_path, make_engine, migrate, session_factory

    migrate(database_url)
    root = hvac.Client(url=raft_cluster.address, token=raft_cluster.token, verify=raft_cluster.ca_file)
    # The drift check sees every user's values: the shared cluster keeps only this test's (earlier tests'
    # values have no row in this database).
    try:
        users = root.secrets.kv.v2.list_secrets(path="users", mount_point="secret")["data"]["keys"]
    except hvac.exceptions.InvalidPath:
        users = []
    for user in users:
        for i in root.secrets.kv.v2.list_secrets(path=f"users/{user}", mount_point="secret")["data"]["keys"]:
            root.secrets.kv.v2.delete_metadata_and_all_versions(path=f"users/{user}{i}", mount_point="secret")
    values = {}
    with session_factory(make_engine(database_url)).begin() as s:
        for i in range(count):
            row = EnvVar(owner="restore-alice", name=f"VAR_{i}", description=canary, vault_path="")
            s.add(row)
            s.flush()
            values[row.id] = f"value {i} = ü\n{canary}"
            root.secrets.kv.v2.create_or_update_secret(path=kv_path("restore-alice", row.id),
                                                       secret={"value": values[row.id]}, mount_point="secret")
    return values


def _restore_check(raft_cluster, creds, store, folder, *extra) -> subprocess.CompletedProcess:
    keys = folder / "unseal-keys.json"
    keys.write_text(json.dumps(raft_cluster.unseal_keys))
    return subprocess.run(
        [sys.executable, RESTORE, *store, "--bao", os.environ["BAO_BIN"], "--unseal-keys-file", str(keys),
         "--role-id-file", str(creds / "executor_role_id"), "--secret-id-file", str(creds / "executor_secret_id"),
         "--live-vault-addr", raft_cluster.address, "--live-ca-file", raft_cluster.ca_file,
         "--dir", str(folder), "--rpo-limit", "600", *extra],
        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_restore_check_restores_the_newest_backups_and_reports_rpo_and_rto(
        configured_raft, raft_cluster, s3_server, pg_for_backups, toolchain, tmp_path, engine):
    import secrets as _secrets

    canary = "canary-" + _secrets.token_hex(12)
    if engine == "sqlite":
        url = f"sqlite:///{tmp_path / 'envvars.db'}"
        db_args = ["--sqlite-file", str(tmp_path / "envvars.db")]
    else:
        url = pg_for_backups.create_database(f"backup_{_secrets.token_hex(4)}")
        (tmp_path / "db-url").write_text(url)
        db_args = ["--database-url-file", str(tmp_path / "db-url")]
    values = _service_data(raft_cluster, url, canary)
    bucket = s3_server.create_bucket()
    store = _store_files(s3_server, tmp_path, bucket)
    took = _agent(raft_cluster, configured_raft, tmp_path, *store, *db_args)
    assert took.returncode == 0, took.stdout + took.stderr
    dump = json.loads(took.stdout.strip().splitlines()[-1])["db_object"]
    assert dump.endswith(".sqlite.enc" if engine == "sqlite" else ".pgdump.enc")
    raw = s3_server.client().get_object(Bucket=bucket, Key=dump)["Body"].read()
    assert canary.encode() not in raw

    extra = []
    if engine == "postgresql":
        (tmp_path / "scratch-url").write_text(pg_for_backups.create_database(f"scratch_{_secrets.token_hex(4)}"))
        extra = ["--scratch-database-url-file", str(tmp_path / "scratch-url")]
    r = _restore_check(raft_cluster, configured_raft, store, tmp_path, *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert line["status"] == "ok" and line["rows"] >= len(values) and line["compared"] >= 1
    assert 0 <= line["rpo_seconds"] < 120 and 0 < line["rto_seconds"] < 120
    print(f"restore check ({engine}, {line['values']} values): RPO {line['rpo_seconds']} s, "
          f"RTO {line['rto_seconds']} s (restored and unsealed after {line['restore_seconds']} s)")
    for secret in (canary, *values.values(), *raft_cluster.unseal_keys,
                   (configured_raft / "executor_secret_id").read_text()):
        assert secret not in r.stdout + r.stderr
    prom = (tmp_path / "restore.prom").read_text()
    assert "envvars_restore_check_last_run_success 1" in prom and "envvars_restore_check_last_success " in prom
    assert "envvars_restore_check_rpo_seconds " in prom and "envvars_restore_check_rto_seconds " in prom
    assert "envvars_restore_check_rpo_limit_seconds 600" in prom


def test_restore_check_fails_on_drift_and_without_the_key(configured_raft, raft_cluster, s3_server, tmp_path):
    import base64
    import secrets as _secrets

    url = f"sqlite:///{tmp_path / 'envvars.db'}"
    values = _service_data(raft_cluster, url, "not-a-canary", count=2)
    bucket = s3_server.create_bucket()
    store = _store_files(s3_server, tmp_path, bucket)
    # A row whose value is gone from Vault before the snapshot: the restored pair drifts.
    root = hvac.Client(url=raft_cluster.address, token=raft_cluster.token, verify=raft_cluster.ca_file)
    root.secrets.kv.v2.delete_metadata_and_all_versions(path=f"users/restore-alice/{next(iter(values))}",
                                                        mount_point="secret")
    assert _agent(raft_cluster, configured_raft, tmp_path, *store, "--sqlite-file",
                  str(tmp_path / "envvars.db")).returncode == 0
    r = _restore_check(raft_cluster, configured_raft, store, tmp_path)
    assert r.returncode == 1
    assert "drift" in json.loads(r.stdout.strip().splitlines()[-1])["error"]
    assert "envvars_restore_check_last_run_success 0" in (tmp_path / "restore.prom").read_text()
    # Another key: nothing in the bucket decrypts.
    (tmp_path / "store" / "backup.key").write_text(base64.b64encode(_secrets.token_bytes(32)).decode())
    r = _restore_check(raft_cluster, configured_raft, store, tmp_path)
    assert r.returncode == 1 and "InvalidTag" in r.stdout
