"""Disaster-recovery RTO with 10,000 env vars: a dev stack in raft mode (3 TLS nodes on the local engine)
filled through the service by two users, then the drill of tools/drill.py (snapshot, database backup,
throwaway cluster, forced restore, unseal, every value verified by hash). Prints the time by step, the
snapshot size and the restore throughput; target: restored and verified in under 60 s.

  python -m bench.drill_rto [--env-vars 10000]
"""
import argparse
import os
import secrets
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import docker
import requests
from pulumi import automation as auto

from devkit.stacks import ThrowawayStack
from tools import drill
from tools.dev_token import id_token
from tools.lib.drills import step

IMAGE = "localhost/vault-envvars/openbao:2.7.2"
TARGET_SECONDS = 60


def fill(out: dict, count: int, ca_file: str) -> tuple[float, int]:
    """`count` env vars of two users through the service, 8 clients; returns creates per second and how
    many 503s were retried (the service fails closed when Vault is slow: nothing written, try again)."""
    tokens = {u: id_token(out, u, ca_file) for u in ("alice", "bob")}

    def create(i: int) -> int:
        user = ("alice", "bob")[i % 2]
        for attempt in range(5):
            r = requests.post(f"{out['service_url']}/api/v2/user/env-vars", timeout=30,
                              headers={"Authorization": f"Bearer {tokens[user]}"},
                              json={"name": f"VAR_{i}", "value": f"{user} {i} {secrets.token_urlsafe(24)}"})
            if r.status_code != 503:
                r.raise_for_status()
                return attempt
            time.sleep(0.5 * (attempt + 1))
        r.raise_for_status()
        return attempt

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        retries = sum(pool.map(create, range(count)))
    return count / (time.monotonic() - started), retries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env-vars", type=int, default=10_000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-drill-")
    os.makedirs(f"{work}/state")
    backend = {"PULUMI_BACKEND_URL": f"file://{work}/state", "PULUMI_CONFIG_PASSPHRASE": secrets.token_hex(8)}
    stack = ThrowawayStack("e2e/programs/dev_stack", backend)
    stack.stack.set_config("vault-envvars:vaultMode", auto.ConfigValue("raft"))
    stack.stack.set_config("vault-envvars:serviceRateLimit", auto.ConfigValue("1000000/minute"))
    try:
        step("pulumi up: a dev stack in raft mode")
        out = {k: v.value for k, v in stack.up().outputs.items()}
        ca_file = os.path.join(work, "ca.pem")
        with open(ca_file, "w") as f:
            f.write(out["vault_ca_cert"])
        step(f"creating {args.env_vars} env vars through the service (2 users, 8 clients)")
        rate, retries = fill(out, args.env_vars, ca_file)
        step(f"{rate:.0f} creates/s ({retries} retried after a 503); running the drill")
        code, report = drill.drill(out, stack.name, os.path.join(work, "reports"), IMAGE)
        if code:
            raise SystemExit(f"the drill failed: {report.get('error') or report.get('mismatched')}")
        steps = report["steps"]
        total = report["restored_and_verified_seconds"]
        size = report["snapshot_bytes"]
        print(f"\nDR drill with {report['values_verified']} env vars (all verified by hash)")
        for name, seconds in steps.items():
            print(f"  {name:<20} {seconds:7.2f} s")
        print(f"  snapshot size        {size / 1e6:7.2f} MB")
        print(f"  restore throughput   {size / 1e6 / report['rto_seconds']:7.2f} MB/s to serving, "
              f"{report['values_verified'] / total:,.0f} env vars/s restored and verified")
        print(f"  restored and verified in {total:.1f} s: {total / TARGET_SECONDS:.2f}x the {TARGET_SECONDS} s "
              f"target ({'met' if total < TARGET_SECONDS else 'MISSED'})")
    finally:
        step("destroying the bench stack")
        try:
            stack.destroy()
        except auto.errors.CommandError:
            # Never leave a 3-node cluster running: its containers, network and volumes carry the label.
            engine, label = docker.from_env(), {"label": f"vault-envvars.stack={stack.name}"}
            for c in engine.containers.list(all=True, filters=label):
                c.remove(force=True)
            for n in engine.networks.list(filters=label):
                n.remove()
            for v in engine.volumes.list(filters=label):
                v.remove(force=True)
            raise


if __name__ == "__main__":
    main()
