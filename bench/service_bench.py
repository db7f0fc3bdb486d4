"""Benchmarks of the env-vars service, each printed as a ratio against a baseline measured in the same
run on the same servers (a real OpenBao dev server configured by the project, SQLite, real HTTP).

  python -m bench.service_bench [--quick]

1. create an env var: service p50 vs a direct JWT login + KV write + SQLite insert (target <= 1.5x)
2. list 1,000 env vars of one user: p50 (target < 20 ms; no Vault call)
3. start an execution with 20 env vars: POST to the child's first instruction vs direct AppRole reads
   + a bare process start (target overhead <= 50 ms)
4. throughput with 8 concurrent clients: creates/s and reads/s vs direct Vault
"""
import argparse
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import hvac
import requests
from pulumi import automation as auto

from devkit.jwt_issuer import TestIssuer
from devkit.service_process import start_service as start_service_process
from devkit.stacks import ThrowawayStack
from devkit.vault_servers import start_dev_server


def p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def setup(workdir: str):
    server = start_dev_server(os.environ["BAO_BIN"], os.path.join(workdir, "bao"))
    issuer = TestIssuer()
    issuer.jwks_url = issuer.serve_jwks()
    backend = {"PULUMI_BACKEND_URL": f"file://{workdir}/state", "PULUMI_CONFIG_PASSPHRASE": secrets.token_hex(8)}
    os.makedirs(f"{workdir}/state")
    stack = ThrowawayStack("integration/programs/vault_config", backend)
    stack.stack.set_all_config({
        "vault-envvars:vaultAddress": auto.ConfigValue(server.address),
        "vault-envvars:vaultToken": auto.ConfigValue(server.token, secret=True),
        "vault-envvars:adoptKvMount": auto.ConfigValue("true"),
        "vault-envvars:auditFilePath": auto.ConfigValue(server.audit_log),
        "vault-envvars:jwtIssuer": auto.ConfigValue(issuer.iss),
        "vault-envvars:jwksUrl": auto.ConfigValue(issuer.jwks_url),
        "vault-envvars:userTokenTtl": auto.ConfigValue("1h"),
        "vault-envvars:executorSecretIdNumUses": auto.ConfigValue("0"),
    })
    outputs = {k: v.value for k, v in stack.up().outputs.items()}
    return server, issuer, stack, outputs


def start_service(server, issuer, outputs, workdir: str) -> tuple[subprocess.Popen, str]:
    secret = os.path.join(workdir, "secret_id")
    with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o400), "w") as f:
        f.write(outputs["executor_secret_id"])
    env = {"ENVVARS_VAULT_ADDR": server.address, "ENVVARS_OIDC_ISSUER": issuer.iss,
           "ENVVARS_OIDC_JWKS_URL": issuer.jwks_url, "ENVVARS_APPROLE_ROLE_ID": outputs["executor_role_id"],
           "ENVVARS_APPROLE_SECRET_ID_FILE": secret, "ENVVARS_RATE_LIMIT": "100000/minute",
           "ENVVARS_MAX_WORKERS": "8"}
    return start_service_process(env, workdir, os.path.join(workdir, "service.log"))


def bench_create(base, server, issuer, n, workdir) -> tuple[float, float]:
    s = requests.Session()
    h = {"Authorization": f"Bearer {issuer.token('bench-create', ttl=3600)}"}
    service = []
    for i in range(n):
        t = time.perf_counter()
        r = s.post(f"{base}/api/v2/user/env-vars", json={"name": f"V{i}", "value": f"value-{i}"}, headers=h)
        service.append(time.perf_counter() - t)
        assert r.status_code == 201, r.text
    db = sqlite3.connect(os.path.join(workdir, "direct.db"))
    db.execute("create table if not exists env_vars (id text primary key, owner text, name text, description text,"
               " created_at text, updated_at text)")
    direct = []
    token = issuer.token("bench-direct", ttl=3600)
    for i in range(n):
        t = time.perf_counter()
        c = hvac.Client(url=server.address)
        c.auth.jwt.jwt_login(role="user", jwt=token, path="jwt")
        env_id = secrets.token_hex(16)
        c.secrets.kv.v2.create_or_update_secret(path=f"users/bench-direct/{env_id}", secret={"value": f"v{i}"},
                                                mount_point="secret")
        db.execute("insert into env_vars values (?,?,?,?,datetime('now'),datetime('now'))",
                   (env_id, "bench-direct", f"V{i}", ""))
        db.commit()
        direct.append(time.perf_counter() - t)
    return p50(service), p50(direct)


def bench_list(base, issuer, workdir) -> float:
    from service.db import EnvVar, make_engine, session_factory

    sessions = session_factory(make_engine(f"sqlite:///{workdir}/envvars.db"))
    with sessions.begin() as s:
        s.add_all([EnvVar(owner="bench-list", name=f"L{i:04d}", description="listed") for i in range(1000)])
    # The rows go straight to the database: listing makes no Vault call either way.
    s_ = requests.Session()
    h = {"Authorization": f"Bearer {issuer.token('bench-list', ttl=3600)}"}
    times = []
    for _ in range(30):
        t = time.perf_counter()
        r = s_.get(f"{base}/api/v2/user/env-vars", params={"limit": 1000}, headers=h)
        times.append(time.perf_counter() - t)
        assert r.json()["total"] == 1000
    return p50(times)


FIRST = "import time; print('START', repr(time.time()))"
# The system's interpreter: a job sees only the system's files (its sandbox), so both sides use it.
PYTHON = "/usr/bin/python3"


def bench_execution(base, server, issuer, outputs, n) -> tuple[float, float]:
    s = requests.Session()
    h = {"Authorization": f"Bearer {issuer.token('bench-exec', ttl=3600)}"}
    ids = [s.post(f"{base}/api/v2/user/env-vars", json={"name": f"E{i}", "value": f"secret-{i}"},
                  headers=h).json()["id"] for i in range(20)]
    service = []
    for _ in range(n):
        t0 = time.time()
        r = s.post(f"{base}/api/v2/execution", json={"command": [PYTHON, "-c", FIRST], "env_var_ids": ids},
                   headers=h).json()
        while (body := s.get(f"{base}/api/v2/execution/{r['id']}", headers=h).json())["status"] in (
                "queued", "running"):
            time.sleep(0.005)
        service.append(float(body["output"].split()[1]) - t0)
    floor = []
    approle = hvac.Client(url=server.address)
    approle.auth.approle.login(role_id=outputs["executor_role_id"], secret_id=outputs["executor_secret_id"])
    for _ in range(n):
        t0 = time.time()
        env = {f"E{i}": approle.secrets.kv.v2.read_secret_version(
            path=f"users/bench-exec/{ids[i]}", mount_point="secret",
            raise_on_deleted_version=True)["data"]["data"]["value"] for i in range(20)}
        out = subprocess.run([PYTHON, "-c", FIRST], env=env, capture_output=True, text=True).stdout
        floor.append(float(out.split()[1]) - t0)
    return p50(service), p50(floor)


def bench_throughput(base, server, issuer, seconds: float) -> dict:
    token = issuer.token("bench-tp", ttl=3600)
    h = {"Authorization": f"Bearer {token}"}

    def run(worker, op):
        s = requests.Session()
        count, i, deadline = 0, 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            op(s, worker, i)
            i += 1
            count += 1
        return count

    def svc_create(s, w, i):
        assert s.post(f"{base}/api/v2/user/env-vars", json={"name": f"T{w}_{i}", "value": "x"}, headers=h).ok

    def svc_read(s, w, i):
        assert s.get(f"{base}/api/v2/user/env-vars", params={"limit": 10}, headers=h).ok

    root = hvac.Client(url=server.address, token=server.token)

    def vault_write(s, w, i):
        root.secrets.kv.v2.create_or_update_secret(path=f"users/bench-tp-direct/{w}-{i}", secret={"value": "x"},
                                                   mount_point="secret")

    def vault_read(s, w, i):
        root.secrets.kv.v2.read_secret_version(path=f"users/bench-tp-direct/{w}-0", mount_point="secret",
                                               raise_on_deleted_version=True)

    rates = {}
    for name, op in (("service creates/s", svc_create), ("service lists/s", svc_read),
                     ("vault writes/s", vault_write), ("vault reads/s", vault_read)):
        with ThreadPoolExecutor(8) as pool:
            rates[name] = sum(pool.map(lambda w, op=op: run(w, op), range(8))) / seconds
    return rates


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="few samples: checks the benchmark still runs")
    args = ap.parse_args()
    n, seconds = (10, 1.0) if args.quick else (100, 5.0)
    workdir = tempfile.mkdtemp(prefix="envvars-bench-")
    server, issuer, stack, outputs = setup(workdir)
    proc = None
    try:
        proc, base = start_service(server, issuer, outputs, workdir)
        svc, direct = bench_create(base, server, issuer, n, workdir)
        print(f"create env var p50: service {svc:.1f} ms, direct login+write+insert {direct:.1f} ms, "
              f"ratio {svc / direct:.2f}x (target <= 1.5x)")
        listed = bench_list(base, issuer, workdir)
        print(f"list 1,000 env vars p50: {listed:.1f} ms (target < 20 ms)")
        svc, floor = bench_execution(base, server, issuer, outputs, max(5, n // 5))
        print(f"execution start with 20 env vars p50: service {svc:.1f} ms, floor {floor:.1f} ms, "
              f"overhead {svc - floor:.1f} ms (target <= 50 ms)")
        rates = bench_throughput(base, server, issuer, seconds)
        print("throughput, 8 clients: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
              + f"; creates vs vault writes {rates['service creates/s'] / rates['vault writes/s']:.2f}x")
    finally:
        if proc:
            proc.terminate()
            proc.wait(10)
        stack.destroy()
        server.stop()
        issuer.stop_jwks()
    return 0


if __name__ == "__main__":
    sys.exit(main())
