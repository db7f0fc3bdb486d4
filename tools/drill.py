"""Disaster-recovery drill for a Raft stack (dev-raft on the container engine, or a prod stack on
Kubernetes): snapshot (with the snapshot-operator credential) and database backup of the source, a
throwaway cluster (containers; on Kubernetes the stack's own component in a fresh namespace), a forced
restore unsealed with the source's keys, a check by hash of every env var (in the stack's KV mount:
its kvPath, `secret` by default), and the service's own drift check of its database backup against the
restored cluster (with its AppRole credential, which the snapshot brings back). Prints each step with
its elapsed time; writes a JSON and a Markdown report; exit 1 when anything does not match.

  python tools/drill.py --stack dev-raft|prod-local [--snapshot FILE] [--out DIR]

Values are read into this process's memory only to be hashed (SHA-256); no value is written anywhere.
"""
import argparse
import datetime
import os
import sys
import tempfile
import time
from typing import Optional

import docker
import hvac
import requests

from infra.clients import kube_forward, vault_ops
from service.drift import drift
from service.settings import Settings
from tools.lib.drill_sources import DockerSource, KubeSource, Source
from tools.lib.drills import StepTimer, kv_hashes, restart_clock, stack_ca_file, stack_kv_mount, step, write_report
from tools.lib.kubeconfig import use_stack_kubeconfig
from tools.lib.raft_nodes import drill_token, stack_nodes
from tools.lib.seal_keys import keys_of, with_keys
from tools.lib.stack_outputs import Out, stack_outputs


def source_address(outputs: dict, ca_file: str) -> str:
    """The source's active node (any node while none answers as active)."""
    nodes = outputs.get(Out.VAULT_NODES) or [outputs[Out.VAULT_ADDRESS]]
    return nodes[max(0, vault_ops.active_index(nodes, ca_file))]


def take_snapshot(outputs: dict, ca_file: str, path: str, credential: tuple[str, str]) -> None:
    """A snapshot taken with the snapshot-operator credential (role id, secret id), from the active node."""
    c = vault_ops.client(source_address(outputs, ca_file), ca=ca_file, timeout=120)
    c.auth.approle.login(role_id=credential[0], secret_id=credential[1])
    vault_ops.take_snapshot(c, path)
    c.auth.token.revoke_self()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stack", default="dev-raft")
    ap.add_argument("--snapshot", help="restore this snapshot (e.g. the newest scheduled one) instead of taking one")
    ap.add_argument("--out", default="drill-reports")
    ap.add_argument("--image", default="localhost/vault-envvars/openbao:2.7.2", help="containers: the nodes' image")
    args = ap.parse_args(argv)
    outputs = with_keys(args.stack, stack_outputs(args.stack))
    kv_mount = stack_kv_mount(args.stack, outputs)
    if not outputs.get(Out.NAMESPACE):
        return drill(outputs, args.stack, args.out, args.image, args.snapshot, kv_mount)[0]
    # a prod stack on Kubernetes
    kubeconfig = use_stack_kubeconfig(args.stack)
    nodes = stack_nodes(args.stack, outputs, stack_ca_file(args.out, args.stack, outputs))
    with drill_token(nodes, outputs) as token:
        return drill(outputs, args.stack, args.out, snapshot_file=args.snapshot, kv_mount=kv_mount, token=token,
                     source=KubeSource(outputs, kubeconfig))[0]


def drill(outputs: dict, stack_name: str, out_dir: str, image: str = "", snapshot_file: str = "",
          kv_mount: str = "secret", token: str = "", source: Optional[Source] = None) -> tuple[int, dict]:
    """Runs the drill against a stack's outputs, on the env vars of its KV mount; returns (exit code, report).
    `token` reads every value of the source (default: the stack's root token); `source` defaults to the
    dev-raft stack's containers, with throwaway nodes of `image`."""
    args = argparse.Namespace(stack=stack_name, out=out_dir, snapshot=snapshot_file)
    started = datetime.datetime.now(datetime.timezone.utc)
    restart_clock()
    timer = StepTimer()
    report: dict = {"stack": args.stack, "started": started.isoformat(), "steps": timer.seconds}
    work = tempfile.mkdtemp(prefix="vault-drill-")
    stack = None
    src: Optional[Source] = source
    try:
        step(f"source stack {args.stack}")
        src = src or DockerSource(outputs, image, docker.from_env())
        ca_file = os.path.join(work, "source-ca.pem")
        with open(ca_file, "w") as f:
            f.write(outputs[Out.VAULT_CA_CERT])
        source_client = vault_ops.client(source_address(outputs, ca_file), token or outputs[Out.VAULT_ROOT_TOKEN],
                                         ca_file, timeout=30)

        snapshot = args.snapshot or os.path.join(work, "source.snap")
        with timer("hash_source", "hashing every value of the source" + (
                " (the snapshot is older: changes since are mismatches)" if args.snapshot else "")):
            expected = kv_hashes(source_client, kv_mount)
        if args.snapshot:
            snapshot_time = datetime.datetime.fromtimestamp(os.path.getmtime(snapshot), datetime.timezone.utc)
        else:
            with timer("snapshot", "saving a Raft snapshot with the snapshot-operator credential"):
                take_snapshot(outputs, ca_file, snapshot, src.snapshot_credential())
            snapshot_time = datetime.datetime.now(datetime.timezone.utc)
        with timer("database_backup", "backing up the service's database"):
            rows, backup_url = src.backup_database(work)

        with timer("throwaway_cluster", "standing up a throwaway 3-node cluster"):
            stack, nodes, fresh_ca_pem = src.throwaway_cluster(work)
            fresh_ca = os.path.join(work, "fresh-ca.pem")
            with open(fresh_ca, "w") as f:
                f.write(fresh_ca_pem)
            keys = keys_of(outputs)
            # Pods start after `up` (containers with it): wait until the first one answers.
            vault_ops.wait_until(lambda: vault_ops.seal_status(nodes[0], fresh_ca, timeout=5), 180,
                                 "the throwaway cluster's first node to answer", interval=1)
            fresh_keys, fresh_root = vault_ops.initialize(nodes[0], len(keys), 3, fresh_ca)
            leader = vault_ops.unseal_until_serving(nodes, fresh_keys, fresh_ca)
            vault_ops.wait_until(lambda: vault_ops.healthy_voters(leader, fresh_root, fresh_ca) >= len(nodes), 120,
                                 "the throwaway cluster's voters", interval=1)
        with timer("restore_to_serving", "restoring the snapshot (forced) and unsealing with the source's keys"):
            vault_ops.force_restore_snapshot(vault_ops.client(leader, fresh_root, fresh_ca, timeout=120), snapshot)
            serving = vault_ops.unseal_until_serving(nodes, keys, fresh_ca)
        rto = timer.seconds["restore_to_serving"]
        with timer("verify", f"serving after {rto:.1f} s; verifying every env var by hash"):
            # The restored cluster has the source's tokens: the one that read the source reads it too.
            restored = vault_ops.client(serving, token or outputs[Out.VAULT_ROOT_TOKEN], fresh_ca, timeout=30)
            got = {}
            for _ in range(30):  # the restored cluster may still settle its leadership
                try:
                    got = kv_hashes(restored, kv_mount)
                    break
                except (hvac.exceptions.VaultError, requests.RequestException):
                    time.sleep(1)
        with timer("service_check", "the service's own drift check: its database backup against the restored "
                                    "cluster, with its AppRole credential (restored with the snapshot)"):
            check = drift(Settings(
                vault_addr=kube_forward.local_url(serving), vault_ca_file=fresh_ca, database_url=backup_url,
                kv_mount=kv_mount, oidc_issuer="-", oidc_audience="-", oidc_jwks_url="-",  # not used by the check
                approle_role_id=outputs[Out.EXECUTOR_ROLE_ID], approle_secret_id=src.executor_secret_id()))
        mismatched = sorted(k for k in expected if k in got and got[k] != expected[k])
        missing = sorted(set(expected) - set(got))
        rows_without_value = sorted(rows - set(got))
        ok = not (mismatched or missing or rows_without_value or check["rows_without_value"]
                  or check["values_without_row"] or check["rows_with_another_vault_path"])
        report.update({
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "rpo_seconds": round((started - snapshot_time).total_seconds(), 1) if args.snapshot else 0.0,
            "snapshot_time": snapshot_time.isoformat(),
            "snapshot_bytes": os.path.getsize(snapshot),
            "rto_seconds": rto,
            "restored_and_verified_seconds": round(rto + timer.seconds["verify"] + timer.seconds["service_check"], 2),
            "cluster_seconds": timer.seconds["throwaway_cluster"],
            "env_vars_in_database": len(rows),
            "values_verified": len([k for k in expected if got.get(k) == expected[k]]),
            "mismatched": mismatched, "missing": missing, "rows_without_value": rows_without_value,
            "service_check": {k: check[k] if isinstance(check[k], int) else len(check[k]) for k in check},
            "passed": ok,
        })
        return (0 if ok else 1), report
    except Exception as e:  # noqa: BLE001 (the report says how it failed)
        report.update(passed=False, error=f"{type(e).__name__}: {e}"[:500])
        return 1, report
    finally:
        report.setdefault("finished", datetime.datetime.now(datetime.timezone.utc).isoformat())
        if stack is not None:
            step("destroying the throwaway cluster")
            stack.destroy(on_output=lambda _l: None)
            stack.workspace.remove_stack(stack.name)
        write_report(report, args.out, "drill", started, markdown(report))


def markdown(r: dict) -> str:
    lines = [f"# Vault DR drill: {'PASSED' if r.get('passed') else 'FAILED'}", "",
             f"- stack: `{r['stack']}`", f"- started: {r['started']}", f"- finished: {r.get('finished', '-')}"]
    for key, label in (("rpo_seconds", "RPO (snapshot age at drill start), s"),
                       ("rto_seconds", "RTO (restore to serving), s"),
                       ("restored_and_verified_seconds", "restore to serving + every value verified, s"),
                       ("cluster_seconds", "throwaway cluster up, s"), ("snapshot_bytes", "snapshot size, bytes"),
                       ("env_vars_in_database", "env vars in the database"),
                       ("values_verified", "values verified by hash")):
        if key in r:
            lines.append(f"- {label}: {r[key]}")
    for key in ("mismatched", "missing", "rows_without_value"):
        if r.get(key):
            lines.append(f"- {key}: " + ", ".join(f"`{i}`" for i in r[key]))
    if r.get("service_check"):
        lines.append("- service drift check: " + ", ".join(f"{k} {v}" for k, v in r["service_check"].items()))
    if r.get("steps"):
        lines.append("- seconds by step: " + ", ".join(f"{k} {v}" for k, v in r["steps"].items()))
    if r.get("error"):
        lines.append(f"- error: {r['error']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
