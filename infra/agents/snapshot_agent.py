#!/usr/bin/env python3
"""Scheduled Raft snapshots: log in with the snapshot-operator AppRole, save a snapshot, verify it,
keep the newest N. Standard library only: it runs in the Debian base image beside the Vault nodes
(Docker) or as a CronJob (Kubernetes).

With `--store-config` it also sends each verified snapshot to an S3-compatible bucket (infra/backup_store.py,
which needs boto3 and cryptography: the service image has both): encrypted with `--key-file`, read back
and compared, pruned by `--tier PERIOD:COUNT`; with `--sqlite-file` or `--database-url-file` the service's
metadata database goes along (SQLite's online backup API; `pg_dump -Fc`), same bucket, same tiers. With
`--no-local-copy` the folder keeps no snapshot, only the run's status. A run whose upload fails is a
failed run, and the last-success time is then the last verified upload's.

Every run prints one JSON line (`"status": "ok"` or `"failed"`), rewrites `status.json` and the
Prometheus text file `snapshot.prom` in the snapshot folder and, with `--pushgateway URL`, pushes the same
two gauges to that Prometheus Pushgateway (group `job="vault-snapshots"`):
  vault_snapshot_last_success       unix time of the newest verified snapshot kept (absent: none yet)
  vault_snapshot_last_run_success   1 if this run saved and verified a snapshot, else 0
  envvars_db_backup_last_success    unix time of the newest verified database backup (with a database)
A failed push is reported in the JSON line and never fails the run (the snapshot is what counts). With
`--interval 0` it runs once and its exit code is the verdict; otherwise it loops and a failed run never
stops the next one.
"""
import argparse
import datetime
import gzip
import hashlib
import http.client
import io
import json
import os
import sqlite3
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request

PREFIX = "vault-raft-"
PUSH_JOB = "vault-snapshots"  # the Pushgateway group, and the scrape job's name (monitoring/rules rely on it)
SUFFIX = ".snap"
UPLOADED = "uploaded.json"  # in the folder: the last verified uploads' times (the store may be unreachable)


def _request(url: str, *, ctx: ssl.SSLContext, method: str = "GET", body: dict | None = None,
             token: str = "", timeout: float = 120) -> http.client.HTTPResponse:
    data = json.dumps(body).encode() if body is not None else None
    # The URL is the configured https Vault address (--vault-addr), never user input.
    req = urllib.request.Request(url, data=data, method=method,  # noqa: S310
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("X-Vault-Token", token)
    return urllib.request.urlopen(req, context=ctx, timeout=timeout)  # noqa: S310


def verify_snapshot(path: str) -> dict:
    """A Raft snapshot is a gzip'd tar whose SHA256SUMS lists every other member: recompute them all."""
    with open(path, "rb") as f:
        raw = gzip.decompress(f.read())
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for m in tar.getmembers():
            member = tar.extractfile(m) if m.isfile() else None
            if member is not None:
                members[m.name] = member.read()
    sums = members.get("SHA256SUMS")
    if sums is None or "state.bin" not in members or "meta.json" not in members:
        raise ValueError(f"not a Raft snapshot (members: {sorted(members)})")
    listed = {}
    for line in sums.decode().splitlines():
        digest, _, name = line.strip().partition("  ")
        listed[name.strip()] = digest
    for name in ("meta.json", "state.bin"):
        if hashlib.sha256(members[name]).hexdigest() != listed.get(name):
            raise ValueError(f"checksum mismatch for {name}")
    meta = json.loads(members["meta.json"])
    return {"index": meta.get("Index"), "term": meta.get("Term")}


def snapshots(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.startswith(PREFIX) and f.endswith(SUFFIX))


def run_once(args: argparse.Namespace, ctx: ssl.SSLContext) -> dict:
    started = time.monotonic()
    role_id = open(args.role_id_file).read().strip()
    secret_id = open(args.secret_id_file).read().strip()
    login = json.load(_request(f"{args.vault_addr}/v1/auth/approle/login", ctx=ctx, method="POST",
                               body={"role_id": role_id, "secret_id": secret_id}))
    token = login["auth"]["client_token"]
    try:
        # Microseconds: two runs within one second keep two files.
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        final = os.path.join(args.dir, f"{PREFIX}{stamp}{SUFFIX}")
        partial = final + ".partial"
        with _request(f"{args.vault_addr}/v1/sys/storage/raft/snapshot", ctx=ctx, token=token) as resp, \
                open(partial, "wb") as out:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        meta = verify_snapshot(partial)  # an unreadable snapshot never takes a retained slot
        os.replace(partial, final)
    finally:
        try:
            _request(f"{args.vault_addr}/v1/auth/token/revoke-self", ctx=ctx, method="POST", body={}, token=token)
        except OSError:
            pass
    result = {"file": os.path.basename(final), "bytes": os.path.getsize(final), "raft_index": meta["index"]}
    if args.store_config:
        result.update(_to_store(args, final, stamp))
    if args.store_config and not args.local_copy:
        os.remove(final)
    for old in snapshots(args.dir)[:-args.retain]:
        os.remove(os.path.join(args.dir, old))
    return {**result, "seconds": round(time.monotonic() - started, 3), "retained": len(snapshots(args.dir))}


def _to_store(args: argparse.Namespace, snapshot_file: str, when: str) -> dict:
    """Sends the verified snapshot (and the database's backup) to the bucket; prunes both by the tiers."""
    bs = store_module()
    settings = bs.StoreSettings.from_files(args.store_config, args.store_credentials)
    key = bs.load_key(args.key_file)
    tiers = bs.parse_tiers(args.tier)
    s3 = bs.client(settings)
    with open(snapshot_file, "rb") as f:
        plain = f.read()
    name = bs.object_name(settings, "snapshots", when, SUFFIX)
    up = bs.upload_verified(s3, settings, name, bs.encrypt(key, name, plain))
    times = _uploaded(args.dir)
    times["snapshot"] = int(datetime.datetime.strptime(when, bs.STAMP_FORMAT).replace(
        tzinfo=datetime.timezone.utc).timestamp())
    _write_json(args.dir, UPLOADED, times)
    out = {"object": up["object"], "object_bytes": up["bytes"],
           "pruned": len(bs.prune(s3, settings, "snapshots", tiers))}
    if args.sqlite_file or args.database_url_file:
        db_when = bs.stamp()
        dump, suffix = _database_backup(args)
        db_name = bs.object_name(settings, "database", db_when, suffix)
        db_up = bs.upload_verified(s3, settings, db_name, bs.encrypt(key, db_name, dump))
        times["database"] = int(time.time())
        _write_json(args.dir, UPLOADED, times)
        out.update(db_object=db_up["object"], db_bytes=db_up["bytes"],
                   db_pruned=len(bs.prune(s3, settings, "database", tiers)))
    return out


def store_module():  # noqa: ANN201 (one module or the other)
    """infra/backup_store.py: beside this file in its container, a package module in the repository."""
    try:
        import backup_store
    except ImportError:
        from infra import backup_store
    return backup_store


def _database_backup(args: argparse.Namespace) -> tuple[bytes, str]:
    """The metadata database as one file: SQLite through its online backup API (consistent while the
    service writes), PostgreSQL as `pg_dump -Fc` (custom format, for pg_restore)."""
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        if args.sqlite_file:
            copy = os.path.join(tmp, "db.sqlite")
            src = sqlite3.connect(f"file:{args.sqlite_file}?mode=ro", uri=True)
            dst = sqlite3.connect(copy)
            try:
                src.backup(dst)
            finally:
                dst.close()
                src.close()
            with open(copy, "rb") as f:
                return f.read(), ".sqlite"
        out = os.path.join(tmp, "db.pgdump")
        # The URL's parts (its password too) go through libpq's environment, never the command line (ps shows it).
        r = subprocess.run(["pg_dump", "-Fc", "--no-owner", "-f", out],
                           env={**os.environ, **pg_environment(open(args.database_url_file).read().strip())},
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"pg_dump failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")
        with open(out, "rb") as f:
            return f.read(), ".pgdump"


def pg_environment(url: str) -> dict[str, str]:
    """libpq's variables for a database URL (postgresql:// or SQLAlchemy's postgresql+psycopg://)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        raise ValueError(f"not a PostgreSQL URL (scheme {parts.scheme!r})")
    env = {"PGHOST": parts.hostname or "", "PGPORT": str(parts.port or 5432),
           "PGDATABASE": urllib.parse.unquote(parts.path.lstrip("/"))}
    if parts.username:
        env["PGUSER"] = urllib.parse.unquote(parts.username)
    if parts.password:
        env["PGPASSWORD"] = urllib.parse.unquote(parts.password)
    query = dict(urllib.parse.parse_qsl(parts.query))
    for name, var in (("sslmode", "PGSSLMODE"), ("sslrootcert", "PGSSLROOTCERT"), ("host", "PGHOST")):
        if name in query:
            env[var] = query[name]
    return {k: v for k, v in env.items() if v}


def _uploaded(folder: str) -> dict:
    try:
        with open(os.path.join(folder, UPLOADED)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_json(folder: str, name: str, value: dict) -> None:
    with open(os.path.join(folder, name + ".tmp"), "w") as f:
        json.dump(value, f)
    os.replace(os.path.join(folder, name + ".tmp"), os.path.join(folder, name))


def metrics_text(folder: str, ok: bool, to_store: bool = False) -> str:
    """The gauges of a run, in Prometheus' text format. A snapshot is in the folder only once verified, so
    the newest one's time is the last success, whatever this run's outcome; with a store, the last
    verified upload's time is."""
    kept = snapshots(folder)
    uploaded = _uploaded(folder) if to_store else {}
    last = uploaded.get("snapshot") if to_store else (
        int(os.path.getmtime(os.path.join(folder, kept[-1]))) if kept else None)
    lines = [
        "# HELP vault_snapshot_last_run_success 1 if the last snapshot run saved and verified a snapshot.",
        "# TYPE vault_snapshot_last_run_success gauge",
        f"vault_snapshot_last_run_success {int(ok)}",
    ]
    if last is not None:
        lines += [
            "# HELP vault_snapshot_last_success Unix time of the newest verified snapshot kept.",
            "# TYPE vault_snapshot_last_success gauge",
            f"vault_snapshot_last_success {int(last)}",
        ]
    if uploaded.get("database") is not None:
        lines += [
            "# HELP envvars_db_backup_last_success Unix time of the newest verified metadata database backup.",
            "# TYPE envvars_db_backup_last_success gauge",
            f"envvars_db_backup_last_success {int(uploaded['database'])}",
        ]
    return "\n".join(lines) + "\n"


def push(url: str, text: str, timeout: float = 10) -> None:
    """Replaces the group's metrics on a Pushgateway (PUT: a gauge absent now does not linger)."""
    # The URL is the configured Pushgateway (--pushgateway), never user input.
    req = urllib.request.Request(f"{url.rstrip('/')}/metrics/job/{PUSH_JOB}", data=text.encode(),  # noqa: S310
                                 method="PUT", headers={"Content-Type": "text/plain; version=0.0.4"})
    with urllib.request.urlopen(req, timeout=timeout):  # noqa: S310
        pass


def record(args: argparse.Namespace, result: dict) -> None:
    ok = result["status"] == "ok"
    text = metrics_text(args.dir, ok, bool(getattr(args, "store_config", "")))
    if args.pushgateway:
        try:
            push(args.pushgateway, text)
            result = {**result, "pushed": True}
        except OSError as e:  # the run's verdict stands; the alert on a stale push shows it
            result = {**result, "pushed": False, "push_error": f"{type(e).__name__}: {e}"[:300]}
    line = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(), "event": "raft-snapshot", **result}
    print(json.dumps(line), flush=True)
    with open(os.path.join(args.dir, "status.json.tmp"), "w") as f:
        json.dump(line, f)
    os.replace(os.path.join(args.dir, "status.json.tmp"), os.path.join(args.dir, "status.json"))
    with open(os.path.join(args.dir, "snapshot.prom.tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(args.dir, "snapshot.prom.tmp"), os.path.join(args.dir, "snapshot.prom"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vault-addr", required=True)
    p.add_argument("--ca-file", default="")
    p.add_argument("--role-id-file", required=True)
    p.add_argument("--secret-id-file", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--retain", type=int, default=24)
    p.add_argument("--interval", type=int, default=0, help="seconds between runs; 0: run once")
    p.add_argument("--pushgateway", default="", help="a Prometheus Pushgateway's URL to push each run's gauges to")
    p.add_argument("--store-config", default="", help="JSON: bucket, prefix, endpoint, region, ca_file")
    p.add_argument("--store-credentials", default="", help="JSON: access_key_id, secret_access_key")
    p.add_argument("--key-file", default="", help="the backups' encryption key: 32 bytes in base64")
    p.add_argument("--tier", action="append", default=[], metavar="PERIOD:COUNT",
                   help="keep the newest backup of each of the COUNT newest PERIOD-second slots (repeat)")
    p.add_argument("--no-local-copy", dest="local_copy", action="store_false",
                   help="with a store: keep no snapshot in --dir")
    p.add_argument("--sqlite-file", default="", help="with a store: back up this SQLite database too")
    p.add_argument("--database-url-file", default="", help="with a store: pg_dump the database at this URL too")
    args = p.parse_args(argv)
    if args.retain < 1:
        p.error("--retain must be at least 1")
    if args.store_config and not (args.store_credentials and args.key_file):
        p.error("--store-config needs --store-credentials and --key-file")
    if not args.store_config and (args.sqlite_file or args.database_url_file):
        p.error("--sqlite-file and --database-url-file need --store-config")
    if args.store_config and not args.tier:
        args.tier = ["3600:24", "86400:14", "604800:8"]
    ctx = ssl.create_default_context(cafile=args.ca_file or None)
    while True:
        try:
            result = {"status": "ok", **run_once(args, ctx)}
        except Exception as e:  # noqa: BLE001 (the job's verdict; the error text holds no secret)
            result = {"status": "failed", "error": f"{type(e).__name__}: {e}"[:500]}
        record(args, result)
        if args.interval <= 0:
            return 0 if result["status"] == "ok" else 1
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
