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

import requests
from pulumi import automation as auto

from tests.fixtures.stacks import ThrowawayStack
from tools import drill
from tools.dev_token import id_token

IMAGE = "localhost/vault-envvars/openbao:2.7.2"
TARGET_SECONDS = 60


def fill(out: dict, count: int, ca_file: str) -> float:
    """`count` env vars of two users through the service, 8 clients; returns creates per second."""
    tokens = {u: id_token(out, u, ca_file) for u in ("alice", "bob")}

    def create(i: int) -> None:
        user = ("alice", "bob")[i % 2]
        r = requests.post(f"{out['service_url']}/api/v2/user/env-vars", timeout=30,
                          headers={"Authorization": f"Bearer {tokens[user]}"},
                          json={"name": f"VAR_{i}", "value": f"{user} {i} {secrets.token_urlsafe(24)}"})
        r.raise_for_status()

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))
    return count / (time.monotonic() - started)


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
        drill.step("pulumi up: a dev stack in raft mode")
        out = {k: v.value for k, v in stack.up().outputs.items()}
        ca_file = os.path.join(work, "ca.pem")
        with open(ca_file, "w") as f:
            f.write(out["vault_ca_cert"])
        drill.step(f"creating {args.env_vars} env vars through the service (2 users, 8 clients)")
        rate = fill(out, args.env_vars, ca_file)
        drill.step(f"{rate:.0f} creates/s; running the drill")
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
        drill.step("destroying the bench stack")
        stack.destroy()


if __name__ == "__main__":
    main()
