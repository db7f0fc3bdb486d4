"""Day 30 in minutes, on the container engine: the dev stack in raft mode deployed with every lifetime
shortened to seconds (the executor's and users' tokens, the config-admin token's period, the Vault
server certificate), jobs and snapshots running throughout while `up --refresh` runs as the nightly
deployment would, across at least three lifetimes of each: no job fails, no snapshot run is missed, and at
the end `up`, the stack check and a drill's break-glass root token still work. Then drift: a deleted
container and a deleted Vault policy are put back by the next `up --refresh`, whose stack check passes."""
import datetime
import hashlib
import json
import os
import secrets
import ssl
import threading
import time

import docker
import pytest
import requests
from cryptography import x509
from pulumi import automation as auto

from devkit.service_process import wait_execution
from infra.clients.vault_ops import break_glass_root
from tests.e2e.helpers import DEV_STACK_PROGRAM, stack_check, vault_client
from tools.dev_token import id_token

pytestmark = pytest.mark.e2e

# Seconds: the admin token's period and the certificate's validity. Longer than an `up --refresh` takes on
# a loaded 2-core machine (15-51 s measured), which must renew both within each lifetime: a token or a
# certificate that lapsed fails the next `up` or the jobs.
LIFE = 75
SHORT = {
    "vaultMode": "raft",
    "monitoring": "false",  # the report of the admin token's expiry is tested in test_dev_stack_docker
    "executorTokenTtl": "8s", "executorTokenMaxTtl": "20s",
    "userTokenTtl": "5s", "userTokenMaxTtl": "10s",
    "adminTokenPeriod": f"{LIFE}s",
    "snapshotInterval": "10s",
    "serviceRateLimit": "6000/minute",  # a job every 2 s and its polls: not what this test is about
}
# Once deployed (a first `up` takes longer than a lifetime): every `up` past a certificate's first RENEW_AGE
# seconds renews it.
RENEW_AGE = 10
SHORT_CERTIFICATE = {"tlsValidity": f"{LIFE}s", "tlsRenewBefore": f"{LIFE - RENEW_AGE}s"}
SNAPSHOT_INTERVAL = 10
JOB = "import os, hashlib; print(hashlib.sha256(os.environb[b'TIME_LAPSE']).hexdigest())"


def _up(s) -> dict:
    """`up --refresh`, as `make up` and the nightly deployment run it."""
    return {k: v.value for k, v in s.stack.up(refresh=True, on_output=lambda _l: None, color="never").outputs.items()}


def _served(address: str) -> x509.Certificate:
    """The certificate the node serves now."""
    host, port = address.removeprefix("https://").split(":")
    return x509.load_pem_x509_certificate(ssl.get_server_certificate((host, int(port))).encode())


def _serial(address: str) -> int:
    return _served(address).serial_number


def tls_seconds_left(address: str) -> float:
    return (_served(address).not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


class Jobs(threading.Thread):
    """A client starting a job every ~2 s, each reading the env var through the executor's AppRole."""

    def __init__(self, url: str, headers: dict, env_var_id: str):
        super().__init__(daemon=True)
        self.url, self.headers, self.env_var_id = url, headers, env_var_id
        self.started: list[str] = []
        self.refused: list[str] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                r = requests.post(f"{self.url}/api/v2/execution", json={
                    "command": ["python3", "-c", JOB], "env_var_ids": [self.env_var_id]},
                    headers=self.headers, timeout=30)
                (self.started if r.status_code == 202 else self.refused).append(
                    r.json()["id"] if r.status_code == 202 else f"{r.status_code} {r.text[:200]}")
            except requests.RequestException as e:
                self.refused.append(type(e).__name__)
            self.stop.wait(2)


def _snapshot_runs(engine, stack_name: str) -> list[dict]:
    agent = engine.containers.get(f"dev-stack-{stack_name}-vault-snapshots-agent")
    return [json.loads(line) for line in agent.logs(stdout=True, stderr=False).decode().splitlines()
            if line.startswith("{")]


def test_time_lapse_nothing_expires_and_drift_is_put_back(throwaway_stack, toolchain, tmp_path):
    engine = docker.DockerClient(base_url=toolchain["docker_host"])
    s = throwaway_stack(DEV_STACK_PROGRAM)
    for key, setting in SHORT.items():
        s.stack.set_config(f"vault-envvars:{key}", auto.ConfigValue(setting))
    t0 = time.monotonic()
    out = {k: v.value for k, v in s.up().outputs.items()}
    print(f"\ndeployed in {time.monotonic() - t0:.0f} s")
    ca_file = str(tmp_path / "ca.pem")
    with open(ca_file, "w") as f:
        f.write(out["vault_ca_cert"])
    nodes, root, url = out["vault_nodes"], out["vault_root_token"], out["service_url"]

    # The AppRole design: secret ids without TTL or use limit (docs/credentials-and-rollouts.md).
    vault = vault_client(nodes[0], root, ca_file)
    for role in ("executor", "snapshot-operator"):
        data = vault.read(f"auth/approle/role/{role}")["data"]
        assert (data["secret_id_ttl"], data["secret_id_num_uses"]) == (0, 0), data

    alice = {"Authorization": f"Bearer {id_token(out, 'alice', ca_file)}"}
    value = f"time-lapse-{secrets.token_hex(8)}"
    ev = requests.post(f"{url}/api/v2/user/env-vars", json={"name": "TIME_LAPSE", "value": value}, headers=alice,
                       timeout=30)
    assert ev.status_code == 201, ev.text
    jobs = Jobs(url, alice, ev.json()["id"])
    lapse_start, runs_before = time.monotonic(), len(_snapshot_runs(engine, s.name))
    jobs.start()
    for key, setting in SHORT_CERTIFICATE.items():
        s.stack.set_config(f"vault-envvars:{key}", auto.ConfigValue(setting))

    # The nightly deployment, compressed: `up --refresh` back to back for three lifetimes and more.
    serials, ups, left_after = {_serial(nodes[0])}, [], []
    while time.monotonic() - lapse_start < 3 * LIFE + 5 or len(ups) < 3:
        t = time.monotonic()
        _up(s)
        ups.append(time.monotonic() - t)
        left_after.append(tls_seconds_left(nodes[0]))
        print(f"up {len(ups)}: {ups[-1]:.0f} s, certificate valid {left_after[-1]:.0f} s more")
        serials.add(_serial(nodes[0]))
    lapse = time.monotonic() - lapse_start
    jobs.stop.set()
    jobs.join()
    print(f"time-lapse: {lapse:.0f} s ({lapse / LIFE:.1f} lifetimes), {len(ups)} ups of "
          f"{min(ups):.0f}-{max(ups):.0f} s, {len(serials)} certificates served, {len(jobs.started)} jobs")

    # 0 failed jobs: every one started, succeeded and received the value.
    assert jobs.refused == []
    expected = hashlib.sha256(value.encode()).hexdigest()
    for execution_id in jobs.started:
        done = wait_execution(url, alice, execution_id)
        assert done["status"] == "succeeded" and expected in done["output"], done
    assert len(jobs.started) >= lapse / 3
    # 0 missed snapshots: every run verified its snapshot, none skipped (the agent sleeps an interval after
    # each run: no gap between two runs much longer than that).
    runs = _snapshot_runs(engine, s.name)[runs_before:]
    assert runs and [r for r in runs if r["status"] != "ok"] == [], runs
    times = [datetime.datetime.fromisoformat(r["time"]).timestamp() for r in runs]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) < 2 * SNAPSHOT_INTERVAL + 5, gaps
    assert len(runs) >= lapse / (2 * SNAPSHOT_INTERVAL), (len(runs), lapse)
    print(f"snapshots: {len(runs)} runs, all verified, gaps {min(gaps):.0f}-{max(gaps):.0f} s")
    # The certificate was renewed (and reloaded: a new serial served) by every `up` that found it inside its
    # renewal window (older than RENEW_AGE at the up's start): after each `up` it has at least the
    # window left, less that up's own duration. Fast `up`s (6 s) find it due every other time, slow ones
    # (15-51 s) every time; either way at least one renewal per lifetime, and it stays a short one.
    window = LIFE - RENEW_AGE
    for took, left in zip(ups, left_after, strict=True):
        assert window - took - 3 < left <= LIFE, (took, left)
    assert len(serials) - 1 >= lapse / LIFE, (len(serials), lapse)

    # The admin operations still work: the stack check (it looks the admin token up) and a break-glass root.
    check = stack_check(s)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "the config-admin token has" in check.stdout, check.stdout
    with break_glass_root(nodes[0], out["vault_unseal_keys"], out["vault_admin_token"], ca_file) as token:
        assert "root" in vault_client(nodes[0], token, ca_file).auth.token.lookup_self()["data"]["policies"]

    # Drift: the service's container and a Vault policy deleted; the next `up --refresh` puts them back.
    engine.containers.get(f"dev-stack-{s.name}-envvars-api").remove(force=True)
    vault.sys.delete_acl_policy("executor")
    _up(s)
    assert "executor" in vault.sys.list_acl_policies()["data"]["keys"]
    check = stack_check(s)
    assert check.returncode == 0, check.stdout + check.stderr
    run = requests.post(f"{url}/api/v2/execution", json={"command": ["python3", "-c", JOB],
                                                        "env_var_ids": [ev.json()["id"]]}, headers=alice, timeout=30)
    assert run.status_code == 202, run.text
    assert wait_execution(url, alice, run.json()["id"])["status"] == "succeeded"
    os.remove(ca_file)
