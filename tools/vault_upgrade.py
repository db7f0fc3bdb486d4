"""Rolls a prod stack's Vault pods onto the StatefulSet's current template: its `OnDelete` updates leave
that to the operator, one pod at a time, standbys first, the leader last.

  python tools/vault_upgrade.py --stack prod-local [--out DIR]

After an `up` that changed the pod template (a Vault version, a setting, resources), each pod whose
revision is not the StatefulSet's update revision is replaced in turn: a standby is deleted (its grace
period and pre-stop delay: clients move off it first), made again by the controller, unsealed with the
stack's keys, and the next pod waits until it is Ready and autopilot counts every voter healthy. The
leader goes last: it steps down first, so an upgraded standby takes over before it is deleted. A break-
glass root token (unseal keys + config-admin token; revoked at the end) reads autopilot and steps down.
Prints each step with its elapsed time; writes a JSON and a Markdown report; exit 1 on failure.
"""
import argparse
import datetime
import sys
import time
from typing import Any

from infra.clients import vault_ops
from tools.lib.drills import restart_clock, stack_ca_file, step, write_report
from tools.lib.kube_nodes import KubeNodes, rejoined, step_down_if_leader
from tools.lib.raft_nodes import drill_token, stack_nodes
from tools.lib.seal_keys import keys_of, with_keys
from tools.lib.stack_outputs import Out, stack_outputs


def _replace(nodes: KubeNodes, i: int, token: str, keys: list[str], target: str) -> float:
    """Replaces pod i (stepping it down first if it leads) and waits until it is back; its seconds."""
    pod, t = nodes.pods[i], time.monotonic()
    step_down_if_leader(nodes, i, token, "an upgraded standby takes over")
    step(f"replacing {pod}")
    nodes.delete_pod(i)
    nodes.wait_serving(i)
    if nodes.revision(i) != target:
        raise RuntimeError(f"{pod} came back on revision {nodes.revision(i)}, not {target}")
    vault_ops.unseal(nodes.nodes[i], keys, nodes.verify)
    vault_ops.wait_until(lambda: rejoined(nodes, i, token), 180, f"{pod} Ready and every voter healthy")
    seconds = round(time.monotonic() - t, 2)
    step(f"{pod} is an unsealed, healthy voter on {target} after {seconds} s")
    return seconds


def roll(nodes: KubeNodes, token: str, keys: list[str]) -> dict[str, Any]:
    """Replaces every pod not on the update revision, standbys first, the leader last."""
    sts = nodes.apps.read_namespaced_stateful_set(nodes.statefulset, nodes.namespace)
    target = sts.status.update_revision
    report: dict[str, Any] = {"statefulset": f"{nodes.namespace}/{nodes.statefulset}", "revision": target,
                              "pods": {}}
    step(f"checking the cluster: every pod a healthy voter before anything is replaced (revision {target})")
    vault_ops.wait_until(lambda: all(rejoined(nodes, i, token) for i in range(len(nodes.pods))), 120,
                         "every pod Ready and a healthy voter")
    stale = [i for i in range(len(nodes.pods)) if nodes.revision(i) != target]
    leader = vault_ops.active_index(nodes.nodes, nodes.verify)
    order = sorted(stale, key=lambda i: i == leader)  # standbys first, the leader last
    report["replaced"] = [nodes.pods[i] for i in order]
    if not order:
        step("every pod is on the StatefulSet's current revision: nothing to do")
    for i in order:
        report["pods"][nodes.pods[i]] = _replace(nodes, i, token, keys, target)
    report["leader_after"] = nodes.pods[vault_ops.active_index(nodes.nodes, nodes.verify)]
    report["passed"] = all(nodes.revision(i) == target for i in range(len(nodes.pods)))
    return report


def markdown(report: dict) -> str:
    lines = [f"# Vault rolling upgrade: {'PASSED' if report.get('passed') else 'FAILED'}", ""]
    lines += [f"- {k}: {v}" for k, v in report.items() if k != "passed"]
    return "\n".join(lines) + "\n"


def run(nodes: KubeNodes, token: str, keys: list[str], out_dir: str) -> tuple[int, dict]:
    started = datetime.datetime.now(datetime.timezone.utc)
    restart_clock()
    report: dict[str, Any] = {"started": started.isoformat()}
    try:
        report.update(roll(nodes, token, keys))
    except Exception as e:  # noqa: BLE001 (the report says how it failed)
        report.update(passed=False, error=f"{type(e).__name__}: {e}"[:500])
    report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    write_report(report, out_dir, "upgrade", started, markdown(report))
    return (0 if report.get("passed") else 1), report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stack", default="prod-local")
    ap.add_argument("--out", default="drill-reports")
    args = ap.parse_args(argv)
    outputs = with_keys(args.stack, stack_outputs(args.stack))
    if not outputs.get(Out.NAMESPACE):
        ap.error(f"stack {args.stack} is not a prod stack on Kubernetes")
    nodes = stack_nodes(args.stack, outputs, stack_ca_file(args.out, args.stack, outputs))
    assert isinstance(nodes, KubeNodes)
    with drill_token(nodes, outputs) as token:
        return run(nodes, token, keys_of(outputs), args.out)[0]


if __name__ == "__main__":
    sys.exit(main())
