"""Benchmarks of the env-vars service against floors measured in the same run on the same servers (a real
OpenBao dev server configured by the project, the service as `python -m service` with its default process
and worker settings, real HTTP). Each measure prints p50 and p99 of the service and of its floor, and their
ratio. A floor is the least work any implementation of the same operation must do; service and floor
samples alternate, so load on the shared cores falls on both alike.

  python -m bench.service_bench [--quick]

1. create an env var (target p50 <= 1.5x). Floor: one KV v2 write with a user token logged in once before
   timing, on a kept-alive connection (one hvac.Client), plus one insert and commit on a warm SQLite
   connection (a SQLite file with the service's schema and its SQLite settings: WAL, synchronous=NORMAL).
2. list 1,000 env vars of one user (target p50 <= 2x). Floor: a direct query of the same rows in the same
   database the service uses (the count and the page, each row's last use by the same correlated
   subquery), encoded to the same JSON bytes as the service's response (checked), with the standard
   library's encoder; no HTTP.
3. start an execution with 20 env vars: POST until the child's first instruction runs (target p50 <= 1.1x).
   Floor: AppRole reads of the 20 values (logged in once, kept-alive; as many in flight as the service's
   executor keeps, READS_IN_FLIGHT) and a bare start of the same command in the same job sandbox the
   service uses (service.executor.sandbox.Sandbox.wrap, as the subprocess backend starts a job). The
   sandbox is a security requirement (jobs are untrusted code), so the floor includes it. The service is
   polled for the job's end only after it has surely started: the measure is the child's own clock.
4. throughput with 8 concurrent clients, each with its own user (target: service creates/s >= 0.5x direct
   Vault writes/s, each client writing with its own user token logged in once, kept-alive): one service,
   then 3 service replicas (3 `python -m service` processes) on one real PostgreSQL, the clients spread
   across them. Lists/s (10 rows) vs Vault reads/s are printed too, for one service. Each side also prints
   the CPU each process took per request (the service, OpenBao, this process's clients, the rest of the
   machine) and how busy the cores were: what a ratio is bound by.
"""
import argparse
import datetime
import gc
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import hvac
import requests
from pulumi import automation as auto

from devkit import procs
from devkit.jwt_issuer import TestIssuer
from devkit.postgres import remove as remove_postgres
from devkit.postgres import start_postgres
from devkit.service_process import start_service as start_service_process
from devkit.stacks import ThrowawayStack
from devkit.vault_servers import start_dev_server
from service.vault.login import VaultLoginSigner

CLIENTS = 8
REPLICAS = 3


def pct(samples: list[float], q: float) -> float:
    """The q-th percentile in ms (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))] * 1000


def p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def compare(label: str, service: list[float], floor: list[float], target: str) -> str:
    s50, s99, f50, f99 = p50(service), pct(service, 99), p50(floor), pct(floor, 99)
    return (f"{label}: service p50 {s50:.1f} ms p99 {s99:.1f} ms | floor p50 {f50:.1f} ms p99 {f99:.1f} ms | "
            f"ratio p50 {s50 / f50:.2f}x p99 {s99 / f99:.2f}x ({target})")


def setup(workdir: str, config: dict[str, auto.ConfigValue] | None = None):
    """A dev server configured by the project's Vault configuration program, plus `config` (more settings)."""
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
        **(config or {}),
    })
    outputs = {k: v.value for k, v in stack.up().outputs.items()}
    # The floor's direct Vault sessions log in as the service does: with its login key (Vault trusts no other).
    issuer.vault_login = VaultLoginSigner(outputs["service_login_key"])
    return server, issuer, stack, outputs


def service_env(server, issuer, outputs, workdir: str) -> dict:
    """The service's settings: only what it must be told, and a rate limit the clients cannot reach.
    Processes, workers and the executor's pool keep their defaults."""
    secret, login_key = os.path.join(workdir, "secret_id"), os.path.join(workdir, "vault_login_key")
    for path, content in ((secret, outputs["executor_secret_id"]), (login_key, outputs["service_login_key"])):
        if not os.path.exists(path):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o400), "w") as f:
                f.write(content)
    return {"ENVVARS_VAULT_ADDR": server.address, "ENVVARS_OIDC_ISSUER": issuer.iss,
            "ENVVARS_OIDC_JWKS_URL": issuer.jwks_url, "ENVVARS_APPROLE_ROLE_ID": outputs["executor_role_id"],
            "ENVVARS_APPROLE_SECRET_ID_FILE": secret, "ENVVARS_VAULT_LOGIN_KEY_FILE": login_key,
            "ENVVARS_RATE_LIMIT": "1000000/minute"}


def user_client(server, issuer, sub: str) -> hvac.Client:
    """A user's own Vault session, logged in once; its requests.Session keeps the connection alive."""
    c = hvac.Client(url=server.address)
    c.auth.jwt.jwt_login(role="user", jwt=issuer.vault_login.token(sub), path="jwt")
    return c


def floor_database(workdir: str) -> sqlite3.Connection:
    """A warm connection to a SQLite file with the service's schema and settings (journal, sync)."""
    from service.db import SQLITE_PRAGMAS, migrate

    path = os.path.join(workdir, "floor.db")
    migrate(f"sqlite:///{path}")
    db = sqlite3.connect(path)
    for pragma in SQLITE_PRAGMAS:
        db.execute(pragma)
    return db


def bench_create(base, server, issuer, n, workdir) -> str:
    s = requests.Session()
    h = {"Authorization": f"Bearer {issuer.token('bench-create', ttl=3600)}"}
    vault = user_client(server, issuer, "bench-floor")
    db = floor_database(workdir)

    def service_create(i: int) -> None:
        r = s.post(f"{base}/api/v2/user/env-vars", json={"name": f"V{i}", "value": f"value-{i}"}, headers=h)
        assert r.status_code == 201, r.text

    def floor_create(i: int) -> None:
        env_id = str(uuid.uuid4())
        vault.secrets.kv.v2.create_or_update_secret(path=f"users/bench-floor/{env_id}", secret={"value": f"v{i}"},
                                                    mount_point="secret")
        t = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        db.execute("insert into env_vars (id, owner, name, description, created_at, updated_at, vault_path) "
                   "values (?, ?, ?, ?, ?, ?, ?)", (env_id, "bench-floor", f"V{i}", "", t, t,
                                                    f"users/bench-floor/{env_id}"))
        db.commit()

    service, floor = alternate(service_create, floor_create, n, warmup=5)
    return compare("create an env var", service, floor, "target p50 <= 1.5x")


def alternate(service_op: Callable[[int], None], floor_op: Callable[[int], None], n: int,
              warmup: int = 0) -> tuple[list[float], list[float]]:
    """n timed samples of each, alternating, after `warmup` untimed ones of each."""
    service: list[float] = []
    floor: list[float] = []
    for i in range(-warmup, n):
        for op, out in ((service_op, service), (floor_op, floor)):
            t = time.perf_counter()
            op(i + warmup)
            if i >= 0:
                out.append(time.perf_counter() - t)
    return service, floor


def bench_list(base, issuer, n, workdir) -> str:
    from service.db import EnvVar, make_engine, session_factory
    from service.schemas import sqlite_iso_utc as stamp  # the same encoding work the service does

    engine = make_engine(f"sqlite:///{workdir}/envvars.db")
    with session_factory(engine).begin() as session:
        session.add_all([EnvVar(owner="bench-list", name=f"L{i:04d}", description="listed") for i in range(1000)])
    engine.dispose()
    # The rows go straight to the database: listing makes no Vault call either way.
    s = requests.Session()
    h = {"Authorization": f"Bearer {issuer.token('bench-list', ttl=3600)}"}
    db = sqlite3.connect(f"{workdir}/envvars.db")
    visible = "e.owner = ? and (e.pending is null or e.pending not like 'create:%')"
    got: dict[str, bytes] = {}

    def service_list(_i: int) -> None:
        r = s.get(f"{base}/api/v2/user/env-vars", params={"limit": 1000}, headers=h)
        assert r.status_code == 200, r.text
        got["service"] = r.content

    def floor_list(_i: int) -> None:
        total = db.execute(f"select count(*) from env_vars e where {visible}", ("bench-list",)).fetchone()[0]  # noqa: S608
        rows = db.execute(f"select e.id, e.name, e.description, e.created_at, e.updated_at, e.expires_at, "  # noqa: S608
                          "l.used_at, l.execution_id from env_vars e left join execution_env_vars l"
                          " on l.env_var_id = e.id and l.execution_id = (select j.execution_id from execution_env_vars j"
                          " where j.env_var_id = e.id and j.used_at is not null"
                          " order by j.used_at desc, j.execution_id desc limit 1)"
                          f" where {visible} order by e.name limit ? offset ?", ("bench-list", 1000, 0)).fetchall()
        items = [{"id": i, "name": n, "description": d, "created_at": stamp(c), "updated_at": stamp(u),
                  "expires_at": x and stamp(x), "last_used_at": la and stamp(la), "last_used_execution_id": le}
                 for i, n, d, c, u, x, la, le in rows]
        got["floor"] = json.dumps({"items": items, "total": total}, separators=(",", ":"),
                                  ensure_ascii=False).encode()

    service, floor = alternate(service_list, floor_list, n, warmup=3)
    assert json.loads(got["service"])["total"] == 1000
    same = "same bytes" if got["service"] == got["floor"] else "same JSON, other bytes"
    assert json.loads(got["service"]) == json.loads(got["floor"]), "the floor must encode the same JSON"
    return compare(f"list 1,000 env vars ({same})", service, floor, "target p50 <= 2x")


FIRST = "import time; print('START', repr(time.time()))"
# The system's interpreter: a job sees only the system's files (its sandbox), so both sides use it.
PYTHON = "/usr/bin/python3"


def bench_execution(base, server, issuer, outputs, n, env) -> str:
    from service.components import job_sandbox
    from service.executor.base import BASE_ENV
    from service.executor.runner import READS_IN_FLIGHT
    from service.settings import Settings

    settings = Settings.from_env(env)
    sandbox = job_sandbox(settings)  # the service's own sandbox, from the same settings
    slot = settings.max_workers  # a uid none of the service's job slots uses
    s = requests.Session()
    h = {"Authorization": f"Bearer {issuer.token('bench-exec', ttl=3600)}"}
    ids = [s.post(f"{base}/api/v2/user/env-vars", json={"name": f"E{i}", "value": f"secret-{i}"},
                  headers=h).json()["id"] for i in range(20)]
    approle = hvac.Client(url=server.address)
    approle.auth.approle.login(role_id=outputs["executor_role_id"], secret_id=outputs["executor_secret_id"])
    service: list[float] = []
    floor: list[float] = []
    reads = ThreadPoolExecutor(READS_IN_FLIGHT)

    def service_start(i: int) -> None:
        t0 = time.time()
        r = s.post(f"{base}/api/v2/execution", json={"command": [PYTHON, "-c", FIRST], "env_var_ids": ids},
                   headers=h)
        assert r.status_code == 202, r.text
        # The measure is the child's own clock: the first poll comes after the job has surely started (a
        # poll is a request the service serves meanwhile, which the floor has not), then slowly.
        time.sleep(0.3)
        while (body := s.get(f"{base}/api/v2/execution/{r.json()['id']}", headers=h).json())["status"] in (
                "queued", "running"):
            time.sleep(0.05)
        assert body["status"] == "succeeded", body
        service.append(float(body["output"].split()[1]) - t0)

    def read(k: int) -> str:
        return approle.secrets.kv.v2.read_secret_version(path=f"users/bench-exec/{ids[k]}", mount_point="secret",
                                                         raise_on_deleted_version=True)["data"]["data"]["value"]

    def floor_start(i: int) -> None:
        t0 = time.time()
        # As many reads in flight as the service's executor keeps (READS_IN_FLIGHT)
        values = {f"E{k}": value for k, value in enumerate(reads.map(read, range(20)))}
        proc = subprocess.Popen(sandbox.wrap([PYTHON, "-c", FIRST], slot), env={**BASE_ENV, **values},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out = proc.communicate(timeout=30)[0].decode()
        assert proc.returncode == 0, out
        floor.append(float(out.split()[1]) - t0)

    with reads:
        for i in range(-2, n):
            service_start(i)
            floor_start(i)
            if i < 0:  # warm-up
                service.clear()
                floor.clear()
    return compare("start an execution with 20 env vars", service, floor, "target p50 <= 1.1x")


def throughput(op: Callable[[int, int], None], seconds: float, warm: Callable[[int], None],
               cpu: "CpuMeter") -> tuple[float, list, dict]:
    """CLIENTS threads calling op(client, i) for `seconds`: requests/s, every request's latency, and the CPU
    each process took per request (ms)."""
    def run(w: int) -> list[float]:
        warm(w)
        times: list[float] = []
        i, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            t = time.perf_counter()
            op(w, i)
            times.append(time.perf_counter() - t)
            i += 1
        return times

    before = cpu.sample()
    with ThreadPoolExecutor(CLIENTS) as pool:
        per_client = list(pool.map(run, range(CLIENTS)))
    latencies = [t for times in per_client for t in times]
    return len(latencies) / seconds, latencies, cpu.per_request(before, cpu.sample(), len(latencies))


class CpuMeter:
    """CPU seconds of named groups of processes (all their threads), of the whole machine, and the rest
    ("other": the database server, the kernel's work for all of them)."""
    def __init__(self, groups: dict[str, list[int]]):
        self.groups, self.tick = groups, os.sysconf("SC_CLK_TCK")

    def sample(self) -> dict[str, float]:
        out = {name: sum(self._process(pid) for pid in pids) for name, pids in self.groups.items()}
        with open("/proc/stat") as f:  # user nice system idle iowait irq softirq steal (guest is in user)
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in f.readline().split()[1:8])
        out["machine"] = (user + nice + system + irq + softirq) / self.tick
        out["wall"] = time.monotonic()
        return out

    def _process(self, pid: int) -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick  # utime, stime

    def per_request(self, a: dict, b: dict, n: int) -> dict:
        spent = {k: b[k] - a[k] for k in a}
        wall = spent.pop("wall")
        named = sum(v for k, v in spent.items() if k != "machine")
        out = {k: 1000 * v / max(n, 1) for k, v in spent.items() if k != "machine"}
        out["other"] = 1000 * max(0.0, spent["machine"] - named) / max(n, 1)
        out["busy"] = spent["machine"] / (wall * (os.cpu_count() or 1))
        return out


def cpu_text(per: dict) -> str:
    parts = ", ".join(f"{k} {v:.2f}" for k, v in per.items() if k != "busy")
    return f"CPU ms per request: {parts}; cores {100 * per['busy']:.0f}% busy"


def rate_line(label: str, svc: tuple, direct: tuple, what: str, target: str) -> str:
    (s_rate, s_lat, s_cpu), (d_rate, d_lat, d_cpu) = svc, direct
    return (f"{label}: service {what} {s_rate:.0f}/s (p50 {p50(s_lat):.1f} ms p99 {pct(s_lat, 99):.1f} ms) | "
            f"direct Vault {d_rate:.0f}/s (p50 {p50(d_lat):.1f} ms p99 {pct(d_lat, 99):.1f} ms) | "
            f"ratio {s_rate / d_rate:.2f}x ({target})\n"
            f"  service side: {cpu_text(s_cpu)}\n  direct side: {cpu_text(d_cpu)}")


def bench_throughput(bases: list[str], server, issuer, seconds: float, tag: str, lists: bool,
                     service_pids: list[int]) -> list[str]:
    """8 clients, each its own user and session; client w talks to bases[w % len(bases)]."""
    cpu = CpuMeter({"service": service_pids, "Vault": [p.pid for p in server.processes], "clients": [os.getpid()]})
    sessions = [requests.Session() for _ in range(CLIENTS)]
    headers = [{"Authorization": f"Bearer {issuer.token(f'bench-tp-{tag}-{w}', ttl=3600)}"} for w in range(CLIENTS)]
    vaults: dict[int, hvac.Client] = {}

    def svc_create(w: int, i: int) -> None:
        r = sessions[w].post(f"{bases[w % len(bases)]}/api/v2/user/env-vars", json={"name": f"T{i + 1}", "value": "x"},
                             headers=headers[w])
        assert r.status_code == 201, r.text

    def svc_list(w: int, i: int) -> None:
        r = sessions[w].get(f"{bases[w % len(bases)]}/api/v2/user/env-vars", params={"limit": 10},
                            headers=headers[w])
        assert r.status_code == 200, r.text

    def svc_warm(w: int) -> None:  # the user's Vault login and admission, before timing
        svc_create(w, -1)

    def vault_warm(w: int) -> None:
        vaults[w] = user_client(server, issuer, f"bench-tp-{tag}-direct-{w}")
        vault_write(w, -1)

    def vault_write(w: int, i: int) -> None:
        vaults[w].secrets.kv.v2.create_or_update_secret(path=f"users/bench-tp-{tag}-direct-{w}/{i}",
                                                        secret={"value": "x"}, mount_point="secret")

    def vault_read(w: int, i: int) -> None:
        vaults[w].secrets.kv.v2.read_secret_version(path=f"users/bench-tp-{tag}-direct-{w}/-1", mount_point="secret",
                                                    raise_on_deleted_version=True)

    label = f"throughput, {CLIENTS} clients, " + ("1 service" if len(bases) == 1 else
                                                 f"{len(bases)} replicas on PostgreSQL")
    creates = throughput(svc_create, seconds, svc_warm, cpu)
    writes = throughput(vault_write, seconds, vault_warm, cpu)
    lines = [rate_line(label, creates, writes, "creates", "target >= 0.5x")]
    if lists:
        listed = throughput(svc_list, seconds, lambda w: None, cpu)
        reads = throughput(vault_read, seconds, lambda w: None, cpu)
        lines.append(rate_line(label, listed, reads, "lists of 10", "vs Vault reads; no target"))
    return lines


def bench_replicas(env: dict, server, issuer, seconds: float, workdir: str) -> list[str]:
    pg = start_postgres()
    replicas = []
    try:
        for r in range(REPLICAS):  # one after another: the first migrates the database
            d = os.path.join(workdir, f"replica{r}")
            os.makedirs(d)
            replicas.append(start_service_process({**env, "ENVVARS_DATABASE_URL": pg.url}, d,
                                                  os.path.join(d, "service.log")))
        return bench_throughput([base for _, base in replicas], server, issuer, seconds, "pg", lists=False,
                                service_pids=[p.pid for p, _ in replicas])
    finally:
        procs.stop(*[p for p, _ in replicas])
        remove_postgres(pg)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="few samples: checks the benchmark still runs")
    args = ap.parse_args()
    n, seconds = (10, 1.0) if args.quick else (100, 5.0)
    workdir = tempfile.mkdtemp(prefix="envvars-bench-")
    server, issuer, stack, outputs = setup(workdir)
    # As the service does at start (service/app.py): what set-up built stays out of the collector's walks,
    # so the floors' p99 are not this process's full collections.
    gc.collect()
    gc.freeze()
    proc = None
    try:
        env = service_env(server, issuer, outputs, workdir)
        proc, base = start_service_process(env, workdir, os.path.join(workdir, "service.log"))
        print(bench_create(base, server, issuer, n, workdir), flush=True)
        print(bench_list(base, issuer, n, workdir), flush=True)
        print(bench_execution(base, server, issuer, outputs, max(5, n // 4), env), flush=True)
        for line in bench_throughput([base], server, issuer, seconds, "one", lists=True, service_pids=[proc.pid]):
            print(line, flush=True)
        procs.stop(proc)
        proc = None
        for line in bench_replicas(env, server, issuer, seconds, workdir):
            print(line, flush=True)
    finally:
        if proc:
            procs.stop(proc)
        stack.destroy()
        server.stop()
        issuer.stop_jwks()
    return 0


if __name__ == "__main__":
    sys.exit(main())
