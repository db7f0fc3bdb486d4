"""Job start with one dynamic env var against its floor, measured in the same run on the same servers (a
real OpenBao dev server configured by the project with the database engine, a real PostgreSQL, the service
as `python -m service`, real HTTP). Prints p50 and p99 of both and their ratio.

  python -m bench.dynamic_bench [--quick]

Service: POST an execution with one dynamic env var until the child's first instruction runs (the child's own
clock; see bench/service_bench.py, measure 3). Floor: the same Vault read (`database/creds/<role>` with a token
that may read it, made before timing, on a kept-alive connection: Vault and the database plugin create the
PostgreSQL login) plus a bare start of the same command in the same job sandbox the service uses. Not in the
floor, and so in the ratio: the job's own token (one more Vault request), the lease's commit, the grant check
as the user when the job is asked for, and the queueing. Revocations happen after the job (the service) or
after the sample (the floor): outside both measures.
"""
import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time

import hvac
import requests
from pulumi import automation as auto

from bench import service_bench
from bench.service_bench import FIRST, PYTHON, compare, service_env
from devkit import procs
from devkit.postgres import remove, require_passwords, start_postgres
from devkit.service_process import start_service

ROLE_SQL = ['CREATE ROLE "{{name}}" WITH LOGIN PASSWORD \'{{password}}\' VALID UNTIL \'{{expiration}}\';']
REVOKE_SQL = ['DROP ROLE IF EXISTS "{{name}}";']


def setup(workdir: str):
    pg = start_postgres()
    require_passwords(pg)
    admin_password = secrets.token_urlsafe(16)
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", "postgres", "-c",
                    f"CREATE ROLE vaultadmin WITH LOGIN CREATEROLE PASSWORD '{admin_password}'"],
                   check=True, capture_output=True)
    url = f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{pg.port}/postgres?sslmode=disable"
    server, issuer, stack, outputs = service_bench.setup(workdir, {
        "vault-envvars:databaseConnections": auto.ConfigValue(json.dumps(
            [{"name": "bench", "username": "vaultadmin", "connectionUrl": url}])),
        "vault-envvars:databaseRoles": auto.ConfigValue(json.dumps(
            [{"name": "bench", "connection": "bench", "creationStatements": ROLE_SQL,
              "revocationStatements": REVOKE_SQL, "defaultTtl": "10m", "users": ["bench-dyn"]}])),
        "vault-envvars:databasePasswords": auto.ConfigValue(json.dumps({"bench": admin_password}), secret=True),
    })
    return pg, server, issuer, stack, outputs


def bench_dynamic_start(base, server, outputs, issuer, n, env) -> str:
    from service.components import job_sandbox
    from service.executor.base import BASE_ENV
    from service.settings import Settings

    settings = Settings.from_env(env)
    sandbox, slot = job_sandbox(settings), settings.max_workers
    s = requests.Session()
    h = {"Authorization": f"Bearer {issuer.token('bench-dyn', ttl=3600)}"}
    r = s.post(f"{base}/api/v2/user/dynamic-env-vars", headers=h, json={
        "name": "BENCHDB", "role": "bench", "env": {"PGUSER": "{{username}}", "PGPASSWORD": "{{password}}"}})
    assert r.status_code == 201, r.text
    dyn_id = r.json()["id"]
    # The floor's reader: a token of the jobs' token role, made once (as the executor's AppRole may).
    approle = hvac.Client(url=server.address)
    approle.auth.approle.login(role_id=outputs["executor_role_id"], secret_id=outputs["executor_secret_id"])
    reader = hvac.Client(url=server.address, token=approle.auth.token.create(
        role_name="envvars-job", ttl="1h", explicit_max_ttl="1h", renewable=False)["auth"]["client_token"])
    service: list[float] = []
    floor: list[float] = []

    def service_start() -> None:
        t0 = time.time()
        r = s.post(f"{base}/api/v2/execution", json={"command": [PYTHON, "-c", FIRST], "dynamic_env_var_ids": [dyn_id]},
                   headers=h)
        assert r.status_code == 202, r.text
        time.sleep(0.3)  # the first poll after the job has surely started: the measure is the child's clock
        while (body := s.get(f"{base}/api/v2/execution/{r.json()['id']}", headers=h).json())["status"] in (
                "queued", "running"):
            time.sleep(0.05)
        assert body["status"] == "succeeded" and body["credentials"][0]["revoked_at"], body
        service.append(float(body["output"].split()[1]) - t0)

    def floor_start() -> None:
        t0 = time.time()
        creds = reader.read("database/creds/bench")
        values = {"PGUSER": creds["data"]["username"], "PGPASSWORD": creds["data"]["password"]}
        proc = subprocess.Popen(sandbox.wrap([PYTHON, "-c", FIRST], slot), env={**BASE_ENV, **values},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out = proc.communicate(timeout=30)[0].decode()
        assert proc.returncode == 0, out
        floor.append(float(out.split()[1]) - t0)
        approle.adapter.put(f"/v1/sys/leases/revoke/{creds['lease_id']}")  # after the sample, as the service's

    for i in range(-2, n):
        service_start()
        floor_start()
        if i < 0:  # warm-up
            service.clear()
            floor.clear()
    return compare("start an execution with 1 dynamic env var", service, floor, "no target set")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="few samples: checks the benchmark still runs")
    n = 5 if ap.parse_args().quick else 30
    workdir = tempfile.mkdtemp(prefix="envvars-dynbench-")
    pg, server, issuer, stack, outputs = setup(workdir)
    proc = None
    try:
        env = service_env(server, issuer, outputs, workdir)
        proc, base = start_service(env, workdir, os.path.join(workdir, "service.log"))
        print(bench_dynamic_start(base, server, outputs, issuer, n, env), flush=True)
    finally:
        if proc:
            procs.stop(proc)
        stack.destroy()
        server.stop()
        issuer.stop_jwks()
        remove(pg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
