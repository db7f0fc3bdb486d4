"""Raft outage drills: the loss of one node, and the loss of quorum recovered with peers.json.

  python tools/raft_drills.py node-loss   --stack dev-raft|prod-local [--node N] [--lose-volume] [--out DIR]
  python tools/raft_drills.py quorum-loss --stack dev-raft|prod-local [--survivor N] [--out DIR]

node-loss: one node (the active one unless --node) is killed; the others elect a leader and take
writes (timed); the node starts again, is unsealed, rejoins as a healthy voter; every value is checked
by hash. quorum-loss: two of three nodes are lost for good (killed, their Raft data wiped); the survivor
cannot serve alone; it is stopped, given a peers.json naming only itself, started and unsealed, and
serves every value (checked by hash: the RTO); the lost nodes come back empty, join it, are unsealed,
and the cluster has three healthy voters again. Runbooks: docs/runbook-node-loss.md and
docs/runbook-quorum-loss.md.

Both drive nodes through `RaftNodes` (kill, start, write peers.json, wipe; tools/lib/raft_nodes.py): the
containers of a dev stack, the pods of a prod stack on Kubernetes (node loss there is meant with
`--lose-volume`: the pod and its volume claims deleted), the processes of a loopback cluster in the tests.
Each step is printed with its elapsed time; a JSON and a Markdown report are written; exit 1 on failure.
"""
import argparse
import datetime
import functools
import sys
import time
from typing import Any

import hvac
import requests

from infra.clients.vault_ops import autopilot_servers, healthy_voters, unseal_until_serving, wait_until
from infra.clients.vault_ops import client as vault_client
from tools.lib.drills import kv_hashes, restart_clock, stack_ca_file, stack_kv_mount, step, write_report
from tools.lib.raft_nodes import RaftNodes, active_node, drill_token, stack_nodes
from tools.lib.seal_keys import keys_of, with_keys
from tools.lib.stack_outputs import Out, stack_outputs

MARKER_PATH = "drill/outage-marker"  # in the KV mount: writes made while a node is down


def _client(c: RaftNodes, address: str, token: str) -> hvac.Client:
    return vault_client(address, token, c.verify, timeout=5)


def _write_marker(c: RaftNodes, token: str, mount: str, i: int, value: str) -> bool:
    for n in [n for j, n in enumerate(c.nodes) if j != i]:  # i = -1: any node
        try:
            _client(c, n, token).secrets.kv.v2.create_or_update_secret(MARKER_PATH, {"value": value},
                                                                       mount_point=mount)
            return True
        except (requests.RequestException, hvac.exceptions.VaultError):
            continue
    return False


def _hashes(c: RaftNodes, token: str, mount: str) -> dict[str, str]:
    """Every value's hash, read from the active node (retried while leadership settles)."""
    def read():
        i = active_node(c)
        return (kv_hashes(_client(c, c.nodes[i], token), mount),) if i >= 0 else None

    return wait_until(read, 60, "reading every value")[0]


def node_loss(c: RaftNodes, token: str, keys: list[str], victim: int = -1, mount: str = "secret",
              lose_volume: bool = False) -> dict:
    """Kills one node (default: the active one), proves the others serve, brings it back: with its data, or
    (`lose_volume`) empty, to join again and catch up from the others."""
    report: dict = {"drill": "node-loss"}
    step("checking the cluster: every node a healthy voter")
    leader = wait_until(lambda: active_node(c) + 1, 30, "an active node") - 1
    wait_until(lambda: healthy_voters(c.nodes[leader], token, c.verify) == len(c.nodes), 60, "every voter healthy")
    expected = _hashes(c, token, mount)
    victim = leader if victim < 0 else victim
    report.update(node=c.node_id(victim), was_active=victim == leader, volume_lost=lose_volume,
                  values=len(expected))

    step(f"killing {c.node_id(victim)}{' (the active node)' if victim == leader else ''}"
         f"{' and deleting its data' if lose_volume else ''}")
    t_kill = time.monotonic()
    c.kill(victim)
    if lose_volume:
        c.wipe(victim)
    wait_until(lambda: _write_marker(c, token, mount, victim, "while-down-0"), 60,
               "a write accepted by the other nodes")
    report["seconds_to_first_write"] = round(time.monotonic() - t_kill, 2)
    step(f"the others took a write after {report['seconds_to_first_write']} s; writing more while it is down")
    for n in range(1, 20):
        wait_until(functools.partial(_write_marker, c, token, mount, victim, f"while-down-{n}"), 30,
                   "writes while a node is down")

    step(f"starting {c.node_id(victim)} again{' (empty: it joins again)' if lose_volume else ''} and unsealing it")
    t_back = time.monotonic()
    c.start(victim)
    unseal_until_serving(c.nodes, keys, c.verify)
    active = active_node(c)
    wait_until(lambda: healthy_voters(c.nodes[active], token, c.verify) == len(c.nodes), 120,
           f"{c.node_id(victim)} a healthy voter again (caught up with the writes made while it was down)")
    report["seconds_to_rejoin"] = round(time.monotonic() - t_back, 2)
    step(f"{c.node_id(victim)} is a healthy voter after {report['seconds_to_rejoin']} s; checking every value by hash")
    return _verify(c, token, mount, expected, report)


def quorum_loss(c: RaftNodes, token: str, keys: list[str], survivor: int = 0, mount: str = "secret") -> dict:
    """Loses every node but `survivor` for good, recovers it with peers.json, rebuilds the others."""
    report: dict = {"drill": "quorum-loss", "survivor": c.node_id(survivor)}
    lost = [i for i in range(len(c.nodes)) if i != survivor]
    step("checking the cluster and hashing every value")
    leader = wait_until(lambda: active_node(c) + 1, 30, "an active node") - 1
    wait_until(lambda: healthy_voters(c.nodes[leader], token, c.verify) == len(c.nodes), 60, "every voter healthy")
    expected = _hashes(c, token, mount)
    report["values"] = len(expected)

    step(f"losing {', '.join(c.node_id(i) for i in lost)}: killed, their Raft data wiped")
    for i in lost:
        c.kill(i)
        c.wipe(i)
    step(f"confirming the outage: {c.node_id(survivor)} alone cannot take a write")
    time.sleep(3)  # past the leader lease: a lone former leader steps down
    report["outage_confirmed"] = not _write_marker(c, token, mount, -1, "during-outage")
    if not report["outage_confirmed"]:
        raise RuntimeError("the survivor still took a write: quorum was not lost")

    step(f"recovering {c.node_id(survivor)} with peers.json naming only itself")
    t_recover = time.monotonic()
    c.kill(survivor)
    c.write_peers(survivor, [{"id": c.node_id(survivor), "address": c.raft_address(survivor), "non_voter": False}])
    c.start(survivor)
    unseal_until_serving([c.nodes[survivor]], keys, c.verify)
    wait_until(lambda: active_node(c) == survivor, 60, f"{c.node_id(survivor)} active")
    got = _hashes(c, token, mount)
    report["rto_seconds"] = round(time.monotonic() - t_recover, 2)
    report["verified_on_survivor"] = sum(1 for k, v in expected.items() if got.get(k) == v)
    step(f"serving every value alone after {report['rto_seconds']} s; rebuilding the lost nodes (empty, joining it)")
    t_rebuild = time.monotonic()
    for i in lost:
        c.start(i)
    unseal_until_serving(c.nodes, keys, c.verify, timeout=180)
    # 37 s on an idle machine; minutes when the machine is loaded (joins retry, autopilot waits for stable
    # servers). A timeout says what autopilot saw last.
    try:
        wait_until(lambda: healthy_voters(c.nodes[survivor], token, c.verify) == len(c.nodes), 300,
                   "three healthy voters again")
    except TimeoutError as e:
        seen = autopilot_servers(c.nodes[survivor], token, c.verify)
        raise TimeoutError(f"{e}; autopilot saw " + (", ".join(
            f"{k}: {v.get('status')}, {'healthy' if v.get('healthy') else 'unhealthy'}" for k, v in sorted(seen.items()))
            or "nothing")) from None
    report["seconds_to_full_cluster"] = round(time.monotonic() - t_rebuild, 2)
    step(f"{len(c.nodes)} healthy voters after {report['seconds_to_full_cluster']} s; checking every value by hash")
    return _verify(c, token, mount, expected, report)


def _verify(c: RaftNodes, token: str, mount: str, expected: dict, report: dict) -> dict:
    got = _hashes(c, token, mount)  # env var values only (users/...), not the drill's marker
    mismatched = sorted(k for k in expected if got.get(k) != expected[k])
    report.update(values_verified=len(expected) - len(mismatched), mismatched=mismatched,
                  passed=not mismatched)
    return report


def markdown(report: dict) -> str:
    lines = [f"# Vault {report['drill']} drill: {'PASSED' if report.get('passed') else 'FAILED'}", ""]
    lines += [f"- {k}: {v}" for k, v in report.items() if k not in ("drill", "passed")]
    return "\n".join(lines) + "\n"


def run(kind: str, c: RaftNodes, token: str, keys: list[str], out_dir: str, index: int,
        kv_mount: str = "secret", lose_volume: bool = False) -> tuple[int, dict]:
    """Runs one drill on the env vars of `kv_mount`; returns (exit code, report)."""
    started = datetime.datetime.now(datetime.timezone.utc)
    restart_clock()
    report: dict[str, Any] = {"drill": kind, "started": started.isoformat()}
    try:
        if kind == "node-loss":
            report.update(node_loss(c, token, keys, index, kv_mount, lose_volume))
        else:
            report.update(quorum_loss(c, token, keys, index, kv_mount))
    except Exception as e:  # noqa: BLE001 (the report says how it failed)
        report.update(passed=False, error=f"{type(e).__name__}: {e}"[:500])
    finally:
        c.release()
    report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    write_report(report, out_dir, kind, started, markdown(report))
    return (0 if report.get("passed") else 1), report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("drill", choices=["node-loss", "quorum-loss"])
    ap.add_argument("--stack", default="dev-raft")
    ap.add_argument("--node", type=int, default=0, help="node-loss: the node to kill, 1-3 (default: the active one)")
    ap.add_argument("--lose-volume", action="store_true",
                    help="node-loss: its data is lost too (on Kubernetes: the pod's volume claims are deleted)")
    ap.add_argument("--survivor", type=int, default=1, help="quorum-loss: the node that survives, 1-3")
    ap.add_argument("--out", default="drill-reports")
    args = ap.parse_args(argv)
    outputs = with_keys(args.stack, stack_outputs(args.stack))
    if Out.VAULT_NODES not in outputs:
        ap.error(f"stack {args.stack} is not in raft mode (vault-envvars:vaultMode raft) nor a prod stack")
    nodes = stack_nodes(args.stack, outputs, stack_ca_file(args.out, args.stack, outputs))
    index = (args.node - 1) if args.drill == "node-loss" else (args.survivor - 1)
    with drill_token(nodes, outputs) as token:
        return run(args.drill, nodes, token, keys_of(outputs), args.out, index,
                   stack_kv_mount(args.stack, outputs), args.lose_volume)[0]


if __name__ == "__main__":
    sys.exit(main())
