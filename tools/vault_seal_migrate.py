"""Moves a running Shamir-sealed prod stack to an auto seal, pod by pod, the service serving meanwhile
(docs/runbook-seal-migration.md).

  python tools/vault_seal_migrate.py --stack prod-local --to static [--out DIR]

1. Checks the cluster (every pod a healthy voter, Shamir) and takes a Raft snapshot, verified (its
   SHA256SUMS) before anything changes, and prints where it is; hashes every env var value.
2. Sets `vault-envvars:seal` and runs `pulumi up`: the new server config and the seal's key reach the
   ConfigMap, a Secret and the StatefulSet's template; `OnDelete` restarts no pod, and the bootstrap keeps
   the Shamir keys until the migration is done.
3. Replaces the standbys, then steps the leader down and replaces it: each new pod starts with the auto seal
   in migration mode and is unsealed with the Shamir keys and `migrate` (`bao operator unseal -migrate`);
   the first migrated pod to lead rewrites the seal; the next pods unseal themselves.
4. Checks every pod reports the new seal, every voter healthy, every value by hash; runs `pulumi up` again,
   which records the change (the unseal keys are now the recovery shares, kept in the state only).
Prints each step with its elapsed time; writes a JSON and a Markdown report; exit 1 on failure.
"""
import argparse
import datetime
import os
import subprocess
import sys
import time
from typing import Any, Callable

from infra.agents.snapshot_agent import verify_snapshot
from infra.clients import vault_ops
from tools.lib.drills import kv_hashes, restart_clock, stack_ca_file, stack_kv_mount, step, write_report
from tools.lib.kube_nodes import KubeNodes, rejoined, step_down_if_leader
from tools.lib.kubeconfig import use_stack_kubeconfig
from tools.lib.raft_nodes import drill_token, stack_nodes
from tools.lib.seal_keys import keys_of, with_keys
from tools.lib.stack_outputs import PROJECT_DIR, Out, stack_outputs

AUTO_SEALS = ("static", "transit")


def _migrate_pod(nodes: KubeNodes, i: int, token: str, keys: list[str], to: str) -> float:
    """Replaces pod i and brings it back under the new seal: `migrate` unseal while the stored seal is still
    Shamir, else it unseals itself. Its seconds."""
    pod, t = nodes.pods[i], time.monotonic()
    step_down_if_leader(nodes, i, token, "a migrated standby takes over and rewrites the seal")
    step(f"replacing {pod}: it starts with the {to} seal")
    nodes.delete_pod(i)
    nodes.wait_serving(i)
    c = vault_ops.client(nodes.nodes[i], ca=nodes.verify, timeout=30)

    def unsealed() -> bool:
        status = c.sys.read_seal_status()
        if not status["sealed"]:
            return True
        if status.get("migration") and status.get("t", 0) > 0:
            c.sys.submit_unseal_keys(keys[:status["t"]], migrate=True)  # `bao operator unseal -migrate`
        return False

    vault_ops.wait_until(unsealed, 120, f"{pod} unsealed under the {to} seal", interval=1)
    vault_ops.wait_until(lambda: rejoined(nodes, i, token), 180, f"{pod} Ready and every voter healthy")
    seconds = round(time.monotonic() - t, 2)
    step(f"{pod} is unsealed, a healthy voter, after {seconds} s")
    return seconds


def migrate(nodes: KubeNodes, token: str, keys: list[str], to: str, apply: Callable[[], None], out_dir: str,
            mount: str = "secret") -> dict[str, Any]:
    if to not in AUTO_SEALS:
        raise ValueError(f"--to {to!r}: allowed values: {', '.join(AUTO_SEALS)}")
    report: dict[str, Any] = {"to": to, "pods": {}}
    step("checking the cluster: Shamir, every pod a healthy voter")
    types = vault_ops.seal_types(nodes.nodes, nodes.verify)
    if types != {"shamir"}:
        raise RuntimeError(f"the cluster's seal is {sorted(types)}, not shamir: nothing to migrate")
    vault_ops.wait_until(lambda: all(rejoined(nodes, i, token) for i in range(len(nodes.pods))), 120,
                         "every pod Ready and a healthy voter")
    leader = nodes.nodes[vault_ops.active_index(nodes.nodes, nodes.verify)]
    snapshot = os.path.join(out_dir, f"before-seal-migration-{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}.snap")
    step("taking a Raft snapshot before any seal change")
    vault_ops.take_snapshot(vault_ops.client(leader, token, nodes.verify, timeout=120), snapshot)
    meta = verify_snapshot(snapshot)
    report["snapshot"] = {"path": os.path.abspath(snapshot), "bytes": os.path.getsize(snapshot), **meta}
    step(f"snapshot verified (every member against its SHA256SUMS; Raft index {meta['index']}): "
         f"{os.path.abspath(snapshot)}; restore it with tools/drill.py --snapshot or docs/runbook-restore.md")
    before = kv_hashes(vault_ops.client(leader, token, nodes.verify, timeout=30), mount)
    report["values"] = len(before)
    step(f"{len(before)} values hashed; applying the {to} seal to the stack (pods keep running: OnDelete)")
    apply()
    leader_i = vault_ops.active_index(nodes.nodes, nodes.verify)
    order = sorted(range(len(nodes.pods)), key=lambda i: i == leader_i)  # standbys first, the leader last
    for i in order:
        report["pods"][nodes.pods[i]] = _migrate_pod(nodes, i, token, keys, to)
    types = vault_ops.seal_types(nodes.nodes, nodes.verify)
    report["seal_after"] = sorted(types)
    active = nodes.nodes[vault_ops.wait_until(lambda: vault_ops.active_index(nodes.nodes, nodes.verify) + 1, 60,
                                              "an active node") - 1]
    after = kv_hashes(vault_ops.client(active, token, nodes.verify, timeout=30), mount)
    mismatched = sorted(k for k, h in before.items() if after.get(k) != h)
    report.update(values_verified=len(before) - len(mismatched), mismatched=mismatched[:20])
    step(f"seal now {sorted(types)}; {report['values_verified']}/{len(before)} values verified by hash")
    report["passed"] = types == {to} and not mismatched and len(before) > 0
    return report


def markdown(report: dict) -> str:
    lines = [f"# Vault seal migration: {'PASSED' if report.get('passed') else 'FAILED'}", ""]
    lines += [f"- {k}: {v}" for k, v in report.items() if k != "passed"]
    return "\n".join(lines) + "\n"


def run(nodes: KubeNodes, token: str, keys: list[str], to: str, apply: Callable[[], None], out_dir: str,
        mount: str = "secret") -> tuple[int, dict]:
    started = datetime.datetime.now(datetime.timezone.utc)
    restart_clock()
    os.makedirs(out_dir, exist_ok=True)
    report: dict[str, Any] = {"started": started.isoformat()}
    try:
        report.update(migrate(nodes, token, keys, to, apply, out_dir, mount))
    except Exception as e:  # noqa: BLE001 (the report says how it failed)
        report.update(passed=False, error=f"{type(e).__name__}: {e}"[:500])
    report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    write_report(report, out_dir, "seal-migration", started, markdown(report))
    return (0 if report.get("passed") else 1), report


def _up(stack: str) -> None:
    """`pulumi up` as `make up` runs it (tools/stack.sh: the stack's kubeconfig for the bootstrap, the checks)."""
    subprocess.run(["bash", "tools/stack.sh", "up", stack], cwd=PROJECT_DIR, check=True)


def _pulumi_apply(stack: str, to: str) -> Callable[[], None]:
    def apply() -> None:
        subprocess.run(["pulumi", "config", "set", "vault-envvars:seal", to, "--stack", stack], cwd=PROJECT_DIR,
                       check=True)
        _up(stack)
    return apply


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stack", default="prod-local")
    ap.add_argument("--to", choices=AUTO_SEALS, default="static")
    ap.add_argument("--out", default="drill-reports")
    args = ap.parse_args(argv)
    outputs = with_keys(args.stack, stack_outputs(args.stack))
    if not outputs.get(Out.NAMESPACE):
        ap.error(f"stack {args.stack} is not a prod stack on Kubernetes")
    use_stack_kubeconfig(args.stack)
    nodes = stack_nodes(args.stack, outputs, stack_ca_file(args.out, args.stack, outputs))
    assert isinstance(nodes, KubeNodes)
    keys = keys_of(outputs)
    with drill_token(nodes, outputs) as token:
        code, _ = run(nodes, token, keys, args.to, _pulumi_apply(args.stack, args.to), args.out,
                      stack_kv_mount(args.stack, outputs))
    if code == 0:
        step("recording the migration in the stack (the unseal keys become its recovery shares)")
        _up(args.stack)
    return code


if __name__ == "__main__":
    sys.exit(main())
