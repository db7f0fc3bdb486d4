"""Disaster-recovery drill for a Raft stack on the container engine: snapshot (with the
snapshot-operator credential) and database backup of the source, a throwaway cluster, a forced
restore unsealed with the source's keys, a check by hash of every env var (in the stack's KV mount:
its kvPath, `secret` by default), and the service's own drift check of its database backup against the
restored cluster (with its AppRole credential, which the snapshot brings back). Prints each step with
its elapsed time; writes a JSON and a Markdown report; exit 1 when anything does not match.

  python tools/drill.py --stack dev-raft [--snapshot FILE] [--out DIR]

Values are read into this process's memory only to be hashed (SHA-256); no value is written anywhere.
"""
import argparse
import datetime
import io
import os
import secrets
import sqlite3
import sys
import tarfile
import tempfile
import time

import docker
import hvac
import pulumi
import requests
from pulumi import automation as auto

from infra import vault_ops
from infra.vault_raft_docker import VaultRaftDocker, VaultRaftDockerArgs
from service.check import drift
from service.settings import Settings
from tools.dev_token import stack_outputs
from tools.drill_common import StepTimer, kv_hashes, restart_clock, stack_kv_mount, step, write_report


def take_snapshot(outputs: dict, ca_file: str, path: str) -> None:
    """A snapshot taken with the snapshot-operator credential, from the active node."""
    nodes = outputs.get("vault_nodes") or [outputs["vault_address"]]
    c = vault_ops.client(nodes[max(0, vault_ops.active_index(nodes, ca_file))], ca=ca_file, timeout=120)
    c.auth.approle.login(role_id=outputs["snapshot_role_id"], secret_id=outputs["snapshot_secret_id"])
    vault_ops.take_snapshot(c, path)
    c.auth.token.revoke_self()


def backup_database(engine: docker.DockerClient, container_name: str, path: str) -> None:
    """An online SQLite backup taken inside the service container, copied out through the API."""
    c = engine.containers.get(container_name)
    inside = "/tmp/drill-backup.db"  # noqa: S108 (the container's own private /tmp)
    code, out = c.exec_run(["python3", "-c", "import sqlite3; s=sqlite3.connect('/data/envvars.db'); "
                            f"d=sqlite3.connect('{inside}'); s.backup(d); d.close()"])
    if code != 0:
        raise RuntimeError(f"database backup failed: {out.decode()[:200]}")
    stream, _ = c.get_archive(inside)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        with open(path, "wb") as f:
            member = tar.extractfile("drill-backup.db")
            if member is None:
                raise RuntimeError("the database backup is missing from the container's archive")
            f.write(member.read())
    c.exec_run(["rm", "-f", inside])


def executor_secret_id(engine: docker.DockerClient, container_name: str) -> str:
    """The service's AppRole secret id, read from its 0400 file into this process's memory only."""
    code, out = engine.containers.get(container_name).exec_run(["cat", "/run/envvars/approle-secret-id"])
    if code != 0:
        raise RuntimeError("cannot read the service's AppRole secret id")
    return out.decode().strip()


def db_rows(path: str) -> set[str]:
    with sqlite3.connect(path) as db:
        return {f"{owner}/{env_id}" for owner, env_id in db.execute("select owner, id from env_vars")}


def throwaway_cluster(work: str, image: str) -> tuple[auto.Stack, dict]:
    def program():
        cluster = VaultRaftDocker("drill", VaultRaftDockerArgs(image=image, labels={"vault-envvars.drill": "1"}))
        pulumi.export("nodes", cluster.node_addresses)
        pulumi.export("ca", cluster.ca_cert_pem)

    os.makedirs(f"{work}/state", exist_ok=True)
    env = {"PULUMI_BACKEND_URL": f"file://{work}/state", "PULUMI_CONFIG_PASSPHRASE": secrets.token_hex(16)}
    stack = auto.create_stack(f"drill-{secrets.token_hex(3)}", project_name="vault-envvars-drill", program=program,
                              opts=auto.LocalWorkspaceOptions(work_dir=work, env_vars=env))
    out = stack.up(on_output=lambda _l: None)
    return stack, {k: v.value for k, v in out.outputs.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stack", default="dev-raft")
    ap.add_argument("--snapshot", help="restore this snapshot (e.g. the newest scheduled one) instead of taking one")
    ap.add_argument("--out", default="drill-reports")
    ap.add_argument("--image", default="localhost/vault-envvars/openbao:2.7.2")
    args = ap.parse_args(argv)
    outputs = stack_outputs(args.stack)
    return drill(outputs, args.stack, args.out, args.image, args.snapshot, stack_kv_mount(args.stack, outputs))[0]


def drill(outputs: dict, stack_name: str, out_dir: str, image: str, snapshot_file: str = "",
          kv_mount: str = "secret") -> tuple[int, dict]:
    """Runs the drill against a stack's outputs, on the env vars of its KV mount; returns (exit code, report)."""
    args = argparse.Namespace(stack=stack_name, out=out_dir, image=image, snapshot=snapshot_file)
    started = datetime.datetime.now(datetime.timezone.utc)
    restart_clock()
    timer = StepTimer()
    report: dict = {"stack": args.stack, "started": started.isoformat(), "steps": timer.seconds}
    work = tempfile.mkdtemp(prefix="vault-drill-")
    stack = None
    try:
        step(f"source stack {args.stack}")
        ca_file = os.path.join(work, "source-ca.pem")
        with open(ca_file, "w") as f:
            f.write(outputs["vault_ca_cert"])
        source = vault_ops.client(outputs["vault_address"], outputs["vault_root_token"], ca_file, timeout=30)

        snapshot = args.snapshot or os.path.join(work, "source.snap")
        with timer("hash_source", "hashing every value of the source" + (
                " (the snapshot is older: changes since are mismatches)" if args.snapshot else "")):
            expected = kv_hashes(source, kv_mount)
        if args.snapshot:
            snapshot_time = datetime.datetime.fromtimestamp(os.path.getmtime(snapshot), datetime.timezone.utc)
        else:
            with timer("snapshot", "saving a Raft snapshot with the snapshot-operator credential"):
                take_snapshot(outputs, ca_file, snapshot)
            snapshot_time = datetime.datetime.now(datetime.timezone.utc)
        engine = docker.from_env()
        with timer("database_backup", "backing up the service's database"):
            backup = os.path.join(work, "envvars.db")
            backup_database(engine, outputs["service_container"], backup)
            rows = db_rows(backup)

        with timer("throwaway_cluster", "standing up a throwaway 3-node cluster"):
            stack, fresh = throwaway_cluster(work, args.image)
            fresh_ca = os.path.join(work, "fresh-ca.pem")
            with open(fresh_ca, "w") as f:
                f.write(fresh["ca"])
            nodes = fresh["nodes"]
            keys = outputs["vault_unseal_keys"]
            fresh_keys, fresh_root = vault_ops.initialize(nodes[0], len(keys), 3, fresh_ca)
            leader = vault_ops.unseal_until_serving(nodes, fresh_keys, fresh_ca)
            vault_ops.wait_until(lambda: vault_ops.healthy_voters(leader, fresh_root, fresh_ca) >= len(nodes), 120,
                                 "the throwaway cluster's voters", interval=1)
        with timer("restore_to_serving", "restoring the snapshot (forced) and unsealing with the source's keys"):
            vault_ops.force_restore_snapshot(vault_ops.client(leader, fresh_root, fresh_ca, timeout=120), snapshot)
            serving = vault_ops.unseal_until_serving(nodes, keys, fresh_ca)
        rto = timer.seconds["restore_to_serving"]
        with timer("verify", f"serving after {rto:.1f} s; verifying every env var by hash"):
            restored = vault_ops.client(serving, outputs["vault_root_token"], fresh_ca, timeout=30)
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
                vault_addr=serving, vault_ca_file=fresh_ca, database_url=f"sqlite:///{backup}", kv_mount=kv_mount,
                oidc_issuer="-", oidc_audience="-", oidc_jwks_url="-",  # not used by the check
                approle_role_id=outputs["executor_role_id"],
                approle_secret_id=executor_secret_id(engine, outputs["service_container"])))
        mismatched = sorted(k for k in expected if k in got and got[k] != expected[k])
        missing = sorted(set(expected) - set(got))
        rows_without_value = sorted(rows - set(got))
        ok = not (mismatched or missing or rows_without_value or check["rows_without_value"]
                  or check["values_without_row"])
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
