"""The service as N replicas: three `python -m service` processes on one real PostgreSQL share the
executions. 200 jobs are submitted across them; one replica is killed with SIGKILL mid-run, another
restarted with SIGTERM; cancels go to replicas that are not running the job. Every job announces its start
to a marker server of the test: no execution is lost, none runs twice, every cancel is honoured."""
import collections
import itertools
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from sqlalchemy import create_engine, text

from devkit import procs
from devkit.net import free_port
from devkit.service_process import start_service
from tests.service.helpers import bearer, process_env

pytestmark = [pytest.mark.integration]

JOBS = 200
CANCELS = 12
LEASE = 3  # seconds: a killed replica's executions are taken over this long after its last renewal
GRACE = 4
# Runs in the job's sandbox (its network is the host's): announces itself, then works for a while.
JOB = "import sys, time, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10); time.sleep(float(sys.argv[2]))"


class Markers(ThreadingHTTPServer):
    """Counts GET /<token> per token: one hit per started job."""

    def __init__(self):
        self.hits: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                with outer.lock:
                    outer.hits[self.path.strip("/")] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args):
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Replica:
    def __init__(self, index: int, env: dict, workdir: str):
        self.index, self.env, self.workdir = index, env, workdir
        self.port = free_port()
        self.starts = 0
        self.proc, self.url = None, f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        # Distinct job uids per replica: they share this host (in Kubernetes each pod has its own).
        env = {**self.env, "ENVVARS_JOB_UID_BASE": str(210_000 + 1000 * self.index)}
        self.proc, _ = start_service(env, self.workdir, f"{self.workdir}/replica-{self.index}-{self.starts}.log",
                                     port=self.port)

    def log(self) -> str:
        with open(f"{self.workdir}/replica-{self.index}-{self.starts}.log") as f:
            return f.read()

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid


def _final(engine) -> dict[str, dict]:
    with engine.connect() as c:
        rows = c.execute(text("select id, status, error, claimed_by, cancel_requested, started_at from executions"))
        return {r.id: r._asdict() for r in rows}


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_three_replicas_lose_nothing_run_nothing_twice_and_honour_every_cancel(
        service_vault, issuer, postgres, tmp_path):
    server, outputs = service_vault
    url = postgres.create_database("replicas")
    engine = create_engine(url)
    markers = Markers()
    env = process_env(server, outputs, issuer, tmp_path, ENVVARS_DATABASE_URL=url, ENVVARS_MAX_WORKERS="4",
                      ENVVARS_EXECUTION_LEASE_SECONDS=str(LEASE), ENVVARS_SHUTDOWN_GRACE_SECONDS=str(GRACE),
                      ENVVARS_RATE_LIMIT="100000/minute")
    replicas = [Replica(i, env, str(tmp_path)) for i in range(3)]
    try:
        for r in replicas:
            r.start()
        users = [bearer(issuer, f"replica-user-{i}") for i in range(4)]
        var_ids = {}
        for i, h in enumerate(users):
            r = requests.post(f"{replicas[0].url}/api/v2/user/env-vars", json={"name": "TOKEN", "value": f"v{i}"},
                              headers=h, timeout=10)
            assert r.status_code == 201, r.text
            var_ids[i] = r.json()["id"]

        submitted: dict[str, dict] = {}  # execution id -> token, user's headers
        rr = itertools.cycle(replicas)

        def submit(token: str, seconds: float, user: int) -> str:
            body = {"command": ["/usr/bin/python3", "-c", JOB, f"{markers.url}/{token}", str(seconds)],
                    "env_var_ids": [var_ids[user]]}
            r = requests.post(f"{next(rr).url}/api/v2/execution", json=body, headers=users[user], timeout=10)
            assert r.status_code == 202, r.text
            submitted[r.json()["id"]] = {"token": token, "headers": users[user]}
            return r.json()["id"]

        # Long jobs first: they fill every worker of every replica, then the short ones queue behind them.
        long_ids = [submit(f"long-{n}", 120, n % 4) for n in range(CANCELS)]
        for n in range(JOBS):
            submit(f"job-{n}", 0.3 + (n % 7) * 0.25, n % 4)
        _wait(lambda: all(markers.hits[f"long-{n}"] for n in range(CANCELS)), 60, "the long jobs never started")

        # Cancels, each sent to a replica that does not run the job: its owner notices and stops it.
        owners = {i: _final(engine)[i]["claimed_by"] or "" for i in long_ids}
        assert len({o.rsplit("-", 1)[0] for o in owners.values()}) == 3, owners  # on every replica
        for execution_id in long_ids:
            target = next(r for r in replicas if f"-{r.pid}-" not in owners[execution_id])
            resp = requests.post(f"{target.url}/api/v2/execution/{execution_id}/cancel",
                                 headers=submitted[execution_id]["headers"], timeout=10)
            assert resp.status_code == 202, resp.text
        _wait(lambda: all(_final(engine)[i]["status"] == "cancelled" for i in long_ids), 30,
              "a cancel sent to another replica was not honoured")

        # Mid-run of the short jobs: a crash of one replica (no shutdown code runs).
        _wait(lambda: sum(1 for e in _final(engine).values() if e["status"] == "running") >= 9, 60,
              "the short jobs never ran on the replicas")
        killed, restarted, survivor = replicas
        killed_id = f"-{killed.pid}-"
        os.kill(killed.pid, signal.SIGKILL)
        killed.proc.wait()
        procs.unregister(killed.proc)
        running_on_killed = {i for i, e in _final(engine).items()
                             if e["status"] == "running" and killed_id in (e["claimed_by"] or "")}

        # A rolling restart of another: SIGTERM, it ends or hands back its work, and comes back. (uvicorn
        # re-raises the signal after a graceful shutdown: the exit status is -SIGTERM.)
        restarted.proc.send_signal(signal.SIGTERM)
        assert restarted.proc.wait(GRACE + 30) in (0, -signal.SIGTERM)
        procs.unregister(restarted.proc)
        assert "Application shutdown complete" in restarted.log()
        restarted.start()
        killed.start()  # the crashed one comes back too, as its Deployment would bring it

        _wait(lambda: all(e["status"] not in ("queued", "running") for e in _final(engine).values()), 240,
              "executions still unfinished")
        final = _final(engine)
    finally:
        for r in replicas:
            if r.proc and r.proc.poll() is None:
                procs.stop(r.proc)
        markers.shutdown()

    assert set(final) == set(submitted)  # none lost
    runs = {submitted[i]["token"]: markers.hits[submitted[i]["token"]] for i in final}
    assert max(runs.values()) == 1, {t: n for t, n in runs.items() if n > 1}  # none run twice
    assert sum(markers.hits.values()) == sum(runs.values())  # no job the test did not submit
    outcomes = collections.Counter(e["status"] for e in final.values())
    for execution_id, e in final.items():
        token = submitted[execution_id]["token"]
        if execution_id in long_ids:
            assert e["status"] == "cancelled", e  # honoured whichever replica got it
        elif e["status"] == "succeeded":
            assert runs[token] == 1
        elif execution_id in running_on_killed:
            assert e["status"] == "failed" and "stopped renewing its lease" in e["error"], e
            assert killed_id in e["error"]
        else:  # the only other truth: stopped by the SIGTERM after its grace period, saying so
            assert e["status"] == "failed" and "shut down" in e["error"], e
    # The killed replica's running jobs failed, naming it; everything it had not started ran elsewhere.
    assert running_on_killed and all(final[i]["status"] == "failed" for i in running_on_killed)
    assert outcomes["succeeded"] >= JOBS - len(running_on_killed) - 4 * 2, outcomes
    # Whatever a stopping replica had not started went back to the queue and ran once elsewhere.
    assert not [i for i, e in final.items() if e["status"] == "failed" and e["started_at"] is None]
