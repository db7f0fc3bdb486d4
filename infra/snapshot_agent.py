#!/usr/bin/env python3
"""Scheduled Raft snapshots: log in with the snapshot-operator AppRole, save a snapshot, verify it,
keep the newest N. Standard library only: it runs in the Debian base image beside the Vault nodes
(Docker) or as a CronJob (Kubernetes).

Every run prints one JSON line (`"status": "ok"` or `"failed"`), rewrites `status.json` and the
Prometheus text file `snapshot.prom` in the snapshot folder and, with `--pushgateway URL`, pushes the same
two gauges to that Prometheus Pushgateway (group `job="vault-snapshots"`):
  vault_snapshot_last_success       unix time of the newest verified snapshot kept (absent: none yet)
  vault_snapshot_last_run_success   1 if this run saved and verified a snapshot, else 0
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
import ssl
import sys
import tarfile
import time
import urllib.request

PREFIX = "vault-raft-"
PUSH_JOB = "vault-snapshots"  # the Pushgateway group, and the scrape job's name (monitoring/rules rely on it)
SUFFIX = ".snap"


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
    for old in snapshots(args.dir)[:-args.retain]:
        os.remove(os.path.join(args.dir, old))
    return {"file": os.path.basename(final), "bytes": os.path.getsize(final), "raft_index": meta["index"],
            "seconds": round(time.monotonic() - started, 3), "retained": len(snapshots(args.dir))}


def metrics_text(folder: str, ok: bool) -> str:
    """The gauges of a run, in Prometheus' text format. A snapshot is in the folder only once verified, so
    the newest one's time is the last success, whatever this run's outcome."""
    kept = snapshots(folder)
    lines = [
        "# HELP vault_snapshot_last_run_success 1 if the last snapshot run saved and verified a snapshot.",
        "# TYPE vault_snapshot_last_run_success gauge",
        f"vault_snapshot_last_run_success {int(ok)}",
    ]
    if kept:
        lines += [
            "# HELP vault_snapshot_last_success Unix time of the newest verified snapshot kept.",
            "# TYPE vault_snapshot_last_success gauge",
            f"vault_snapshot_last_success {int(os.path.getmtime(os.path.join(folder, kept[-1])))}",
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
    text = metrics_text(args.dir, ok)
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
    args = p.parse_args(argv)
    if args.retain < 1:
        p.error("--retain must be at least 1")
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
