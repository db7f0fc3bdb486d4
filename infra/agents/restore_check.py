#!/usr/bin/env python3
"""Restore check: proves that the newest backups in the bucket restore. It fetches the newest Raft
snapshot and metadata database backup (infra/backup_store.py), restores the snapshot into a throwaway
one-node OpenBao (Raft storage on a temp folder, loopback only) unsealed with the source cluster's keys,
reads a sample of values through it with the executor AppRole (compared by SHA-256 with the live Vault
where it is given, for the same KV version), restores the database (SQLite: the file; PostgreSQL:
`pg_restore` into a scratch database) and runs the service's drift check (`python -m service check`)
against the restored pair.

Every run prints one JSON line and, like the snapshot agent, writes `restore.prom` (and pushes it with
`--pushgateway URL`, group `job="vault-restore-check"`):
  envvars_restore_check_last_run_success  1 if this run restored and verified, else 0
  envvars_restore_check_last_success      unix time of the last run that did
  envvars_restore_check_rpo_seconds       the age of the newest restorable snapshot when it was restored
  envvars_restore_check_rto_seconds       fetch to verified: the measured recovery time
  envvars_restore_check_rpo_limit_seconds the stack's RPO objective (the alert compares the two)
Secrets (unseal keys, AppRole secret, database URL, values) are read from files and never printed.
"""
import argparse
import datetime
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Optional

PUSH_JOB = "vault-restore-check"
STATUS = "restore-status.json"


def _modules() -> tuple[Any, Any]:
    """backup_store and snapshot_agent: beside this file in a container, package modules in the repository."""
    try:
        import backup_store
        import snapshot_agent
    except ImportError:
        from infra import backup_store, snapshot_agent
    return backup_store, snapshot_agent


def _http(method: str, url: str, body: Optional[bytes] = None, token: str = "", timeout: float = 60) -> Any:
    req = urllib.request.Request(url, data=body, method=method)  # noqa: S310 (our own loopback server)
    if token:
        req.add_header("X-Vault-Token", token)
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310
        raw = r.read()
        return json.loads(raw) if raw else None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayVault:
    """A one-node OpenBao on Raft storage in `workdir`, plain HTTP on loopback, its audit devices declared
    as the source cluster's (a restored audit table must match the configuration)."""

    def __init__(self, bao: str, workdir: str, audit_file_path: str):
        self.workdir = workdir
        port, cluster = _free_port(), _free_port()
        self.address = f"http://127.0.0.1:{port}"
        os.makedirs(os.path.join(workdir, "raft"), exist_ok=True)
        if os.path.isabs(audit_file_path):
            os.makedirs(os.path.dirname(audit_file_path), exist_ok=True)
        audit = "".join(
            f'audit "file" "{path}" {{\n  description = "{desc}"\n  options {{\n'
            + "".join(f'    {k} = "{v}"\n' for k, v in opts.items()) + "  }\n}\n"
            for path, desc, opts in (("file", "audit log file", {"file_path": audit_file_path, "mode": "0600"}),
                                     ("stdout", "audit log to stdout", {"file_path": "stdout"})))
        config = os.path.join(workdir, "restore.hcl")
        with open(config, "w") as f:
            f.write(f"""ui = false
disable_mlock = true
api_addr = "{self.address}"
cluster_addr = "https://127.0.0.1:{cluster}"
storage "raft" {{
  path = "{workdir}/raft"
  node_id = "restore-check"
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = true
}}
{audit}""")
        self.log = open(os.path.join(workdir, "server.log"), "w")
        self.proc = subprocess.Popen([bao, "server", f"-config={config}"], cwd=workdir, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def _wait(self, check, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the throwaway OpenBao exited ({self.proc.returncode}) while waiting for {what}")
            try:
                result = check()
                if result:
                    return result
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the throwaway OpenBao: no {what} within {timeout:.0f} s")

    def seal_status(self) -> dict:
        return _http("GET", f"{self.address}/v1/sys/seal-status", timeout=5)

    def unseal(self, keys: list[str], timeout: float = 60, settle: int = 1) -> None:
        """Until unsealed and active on `settle` checks in a row."""
        streak = [0]

        def step():
            s = self.seal_status()
            if s.get("sealed"):
                streak[0] = 0
                for k in keys[:s["t"]]:
                    _http("PUT", f"{self.address}/v1/sys/unseal", json.dumps({"key": k}).encode(), timeout=10)
                return False
            try:
                _http("GET", f"{self.address}/v1/sys/health", timeout=5)  # 200 only when active
                streak[0] += 1
            except OSError:
                streak[0] = 0
            return streak[0] >= settle
        self._wait(step, timeout, "an active, unsealed node")

    def restore(self, snapshot: bytes, source_keys: list[str]) -> None:
        self._wait(self.seal_status, 30, "an answer")
        # As many shares as the source's keys, all needed: after the restore the node still asks for its own
        # threshold, and all the source's keys (any number above the source's threshold) rebuild its key.
        n = len(source_keys)
        init = _http("PUT", f"{self.address}/v1/sys/init",
                     json.dumps({"secret_shares": n, "secret_threshold": n}).encode())
        self.unseal(init["keys_base64"])
        _http("POST", f"{self.address}/v1/sys/storage/raft/snapshot-force", snapshot, token=init["root_token"],
              timeout=300)
        # Sealed again some moments later; it opens with the source cluster's keys only. Those keys
        # are what prove the backup usable: the throwaway's own are gone with its old barrier.
        try:
            self._wait(lambda: self.seal_status().get("sealed"), 15, "the seal after the restore")
        except TimeoutError:
            pass  # the unseal below waits for a node that stays active, sealed or not
        self.unseal(source_keys, settle=3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _executor(address: str, ca_file: str, args: argparse.Namespace) -> Any:
    from service.vault import VaultGateway

    return VaultGateway(address, ca_file, args.kv_mount, approle_mount=args.approle_mount).executor(
        _read(args.role_id_file), _read(args.secret_id_file))


def verify_sample(restored: Any, live: Any, size: int, seed: Optional[int] = None) -> dict:
    """Reads up to `size` values through the restored Vault; with the live Vault, each must hash the same
    as the live one's value of the same KV version (a version the live Vault no longer has is skipped)."""
    ids = sorted((u, i) for u in restored.list_users() for i in restored.list_ids(u))
    sample = random.Random(seed).sample(ids, min(size, len(ids)))  # noqa: S311 (a sample, not a secret)
    matched = compared = 0
    for user, i in sample:
        value, version = restored.read_versioned(user, i)
        if live is None:
            continue
        from service.vault import SecretMissing

        try:
            live_value, _ = live.read_versioned(user, i, version)
        except SecretMissing:  # destroyed or deleted since the snapshot: nothing to compare
            continue
        compared += 1
        if hashlib.sha256(value.encode()).digest() == hashlib.sha256(live_value.encode()).digest():
            matched += 1
    if compared != matched:
        raise ValueError(f"{compared - matched} of {compared} sampled values differ from the live Vault's "
                         "value of the same version")
    return {"values": len(ids), "sampled": len(sample), "compared": compared}


def _restore_database(args: argparse.Namespace, name: str, data: bytes, workdir: str) -> dict:
    """The restored database's settings for the service: ENVVARS_* variables."""
    if name.endswith(".sqlite.enc"):
        path = os.path.join(workdir, "envvars.db")
        with open(path, "wb") as f:
            f.write(data)
        return {"ENVVARS_DATABASE_URL": f"sqlite:///{path}"}
    if not args.scratch_database_url_file:
        raise ValueError("a PostgreSQL backup needs --scratch-database-url-file (where pg_restore may write)")
    _, snapshot_agent = _modules()
    url = _read(args.scratch_database_url_file)
    dump = os.path.join(workdir, "db.pgdump")
    with open(dump, "wb") as f:
        f.write(data)
    r = subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--exit-on-error", "-d",
                        snapshot_agent.pg_environment(url)["PGDATABASE"], dump],
                       env={**os.environ, **snapshot_agent.pg_environment(url)}, capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"pg_restore failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")
    return {"ENVVARS_DATABASE_URL_FILE": args.scratch_database_url_file}


def run_once(args: argparse.Namespace) -> dict:
    bs, snapshot_agent = _modules()
    started = time.monotonic()
    settings = bs.StoreSettings.from_files(args.store_config, args.store_credentials)
    key = bs.load_key(args.key_file)
    s3 = bs.client(settings)
    snaps = bs.list_backups(s3, settings, "snapshots")
    dbs = bs.list_backups(s3, settings, "database")
    if not snaps:
        raise ValueError(f"no snapshot in s3://{settings.bucket}/{settings.prefix}snapshots/")
    if args.with_database and not dbs:
        raise ValueError(f"no database backup in s3://{settings.bucket}/{settings.prefix}database/")
    snap_name = snaps[-1]
    workdir = tempfile.mkdtemp(prefix="restore-check-", dir=args.workdir or None)
    vault = None
    try:
        snapshot = bs.fetch(s3, settings, key, snap_name)
        with open(os.path.join(workdir, "snapshot.snap"), "wb") as f:
            f.write(snapshot)
        meta = snapshot_agent.verify_snapshot(os.path.join(workdir, "snapshot.snap"))
        vault = ThrowawayVault(args.bao, workdir, args.audit_file_path)
        vault.restore(snapshot, json.loads(_read(args.unseal_keys_file)))
        restored_at = time.monotonic()
        live = _executor(args.live_vault_addr, args.live_ca_file, args) if args.live_vault_addr else None
        sample = verify_sample(_executor(vault.address, "", args), live, args.sample)
        result: dict = {"snapshot": snap_name, "raft_index": meta["index"], **sample}
        if args.with_database:
            env = _restore_database(args, dbs[-1], bs.fetch(s3, settings, key, dbs[-1]), workdir)
            with open(os.path.join(workdir, "secret_id"), "w") as f:
                f.write(_read(args.secret_id_file))
            check = subprocess.run(
                [sys.executable, "-m", "service", "check"], capture_output=True, text=True, timeout=600,
                env={**os.environ, **env, "ENVVARS_VAULT_ADDR": vault.address, "ENVVARS_KV_MOUNT": args.kv_mount,
                     "ENVVARS_APPROLE_MOUNT": args.approle_mount,
                     "ENVVARS_APPROLE_ROLE_ID": _read(args.role_id_file),
                     "ENVVARS_APPROLE_SECRET_ID_FILE": os.path.join(workdir, "secret_id"),
                     # The check signs nobody in; the service's settings still ask for an issuer.
                     "ENVVARS_OIDC_ISSUER": "https://restore-check.invalid", "ENVVARS_OIDC_JWKS_URL":
                     "https://restore-check.invalid/jwks"})
            try:
                report = json.loads(check.stdout)
            except ValueError:
                raise RuntimeError(f"the drift check failed (exit {check.returncode}): "
                                   f"{check.stderr.strip()[-300:]}") from None
            if check.returncode != 0:
                drifted = {k: len(v) for k, v in report.items() if isinstance(v, list) and v}
                raise ValueError(f"the drift check found drift in the restored pair: {drifted}")
            result.update(database=dbs[-1], rows=report["rows"])
    finally:
        if vault:
            vault.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    when = bs.stamp_time(snap_name)
    return {**result, "rpo_seconds": round(time.time() - when.timestamp(), 1),
            "rto_seconds": round(time.monotonic() - started, 2),
            "restore_seconds": round(restored_at - started, 2)}


def _wait_for_backups(args: argparse.Namespace) -> None:
    """Until the bucket holds a snapshot (and a database backup), at most --initial-wait seconds: beside a
    new stack, the snapshot job's first run is still under way."""
    bs, _ = _modules()
    deadline = time.monotonic() + args.initial_wait
    while time.monotonic() < deadline:
        try:
            settings = bs.StoreSettings.from_files(args.store_config, args.store_credentials)
            s3 = bs.client(settings)
            if bs.list_backups(s3, settings, "snapshots") and (
                    not args.with_database or bs.list_backups(s3, settings, "database")):
                return
        except Exception:  # noqa: BLE001, S110 (the first run reports what is wrong)
            pass
        time.sleep(5)


def metrics_text(folder: str, ok: bool, result: dict, rpo_limit: int) -> str:
    prev = {}
    try:
        with open(os.path.join(folder, STATUS)) as f:
            prev = json.load(f)
    except (OSError, ValueError):
        pass
    last = int(time.time()) if ok else prev.get("last_success")
    lines = ["# TYPE envvars_restore_check_last_run_success gauge",
             f"envvars_restore_check_last_run_success {int(ok)}",
             "# TYPE envvars_restore_check_rpo_limit_seconds gauge",
             f"envvars_restore_check_rpo_limit_seconds {rpo_limit}"]
    if last is not None:
        lines += ["# TYPE envvars_restore_check_last_success gauge", f"envvars_restore_check_last_success {last}"]
    measured = result if ok else prev
    for name in ("rpo_seconds", "rto_seconds"):
        if measured.get(name) is not None:
            lines += [f"# TYPE envvars_restore_check_{name} gauge", f"envvars_restore_check_{name} {measured[name]}"]
    with open(os.path.join(folder, STATUS + ".tmp"), "w") as f:
        json.dump({"last_success": last, **({k: measured.get(k) for k in ("rpo_seconds", "rto_seconds")})}, f)
    os.replace(os.path.join(folder, STATUS + ".tmp"), os.path.join(folder, STATUS))
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store-config", required=True)
    p.add_argument("--store-credentials", required=True)
    p.add_argument("--key-file", required=True)
    p.add_argument("--bao", default=shutil.which("bao") or "bao", help="the OpenBao binary")
    p.add_argument("--unseal-keys-file", required=True, help="JSON list: the source cluster's unseal keys")
    p.add_argument("--role-id-file", required=True, help="the executor AppRole's role id")
    p.add_argument("--secret-id-file", required=True, help="the executor AppRole's secret id")
    p.add_argument("--kv-mount", default="secret")
    p.add_argument("--approle-mount", default="approle")
    p.add_argument("--audit-file-path", default="audit.log", help="the source cluster's audit file path")
    p.add_argument("--live-vault-addr", default="", help="compare the sample with this Vault's values")
    p.add_argument("--live-ca-file", default="")
    p.add_argument("--sample", type=int, default=20)
    p.add_argument("--no-database", dest="with_database", action="store_false")
    p.add_argument("--scratch-database-url-file", default="", help="PostgreSQL backups restore there")
    p.add_argument("--workdir", default="", help="where the throwaway server's files go (default: the temp dir)")
    p.add_argument("--dir", required=True, help="where restore.prom and the status go")
    p.add_argument("--rpo-limit", type=int, default=7200, help="seconds; pushed for the RPO alert")
    p.add_argument("--pushgateway", default="")
    p.add_argument("--interval", type=int, default=0, help="seconds between runs; 0: run once")
    p.add_argument("--initial-wait", type=int, default=0,
                   help="seconds the first run waits for a first backup (a stack's first start)")
    args = p.parse_args(argv)
    if args.initial_wait > 0:
        _wait_for_backups(args)
    while True:
        try:
            result = {"status": "ok", **run_once(args)}
        except Exception as e:  # noqa: BLE001 (the check's verdict; messages carry no secret)
            result = {"status": "failed", "error": f"{type(e).__name__}: {e}"[:500]}
        text = metrics_text(args.dir, result["status"] == "ok", result, args.rpo_limit)
        with open(os.path.join(args.dir, "restore.prom.tmp"), "w") as f:
            f.write(text)
        os.replace(os.path.join(args.dir, "restore.prom.tmp"), os.path.join(args.dir, "restore.prom"))
        if args.pushgateway:
            try:
                req = urllib.request.Request(f"{args.pushgateway.rstrip('/')}/metrics/job/{PUSH_JOB}",  # noqa: S310
                                             data=text.encode(), method="PUT",
                                             headers={"Content-Type": "text/plain; version=0.0.4"})
                urllib.request.urlopen(req, timeout=10).close()  # noqa: S310
                result["pushed"] = True
            except OSError as e:
                result["push_error"] = f"{type(e).__name__}: {e}"[:300]
        print(json.dumps({"time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                          "event": "restore-check", **result}), flush=True)
        if args.interval <= 0:
            return 0 if result["status"] == "ok" else 1
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
