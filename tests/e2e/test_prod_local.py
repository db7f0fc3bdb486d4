"""The prod composition on the local three-node cluster (tools/cluster.sh) with Pulumi.prod-local.yaml's
settings, from an empty namespace, in one real `pulumi up`: three Vault pods on three nodes, Raft formed,
bootstrap through the Kubernetes API (no port-forward by hand), configuration, the snapshot CronJob, the
service on PostgreSQL behind a NodePort, jobs as Kubernetes Jobs. Then the running pods are checked the
way testinfra would: users, read-only roots, listening ports, file modes, TLS, the audit log."""
import base64
import hashlib
import json
import os
import re
import secrets
import socket
import ssl
import threading
import time

import pytest
import requests
import yaml

from devkit.cluster import kubectl, run_cluster_sh
from devkit.stacks import ThrowawayStack
from infra.clients import kube_forward, vault_ops
from tests.helpers import REPO_ROOT
from tests.service.helpers import PRINT_ENCODED
from tools import drill as drill_tool
from tools import raft_drills, vault_upgrade
from tools.dev_token import id_token
from tools.lib.drill_sources import KubeSource, throwaway_cluster
from tools.lib.drills import kv_hashes
from tools.lib.kube_nodes import KubeNodes, rejoined
from tools.lib.raft_nodes import drill_token
from tools.lib.seal_keys import keys_of, with_keys

pytestmark = [pytest.mark.e2e, pytest.mark.k8s]
NS, JOBS_NS, NODE_PORT = "t-prod-local", "t-prod-local-jobs", 30091
PUBLIC_URL = f"http://10.244.0.1:{NODE_PORT}"
CANARY = "canary-k8s-7Qm2vX9pL4"


@pytest.fixture(scope="module")
def cluster_s3(local_cluster, tmp_path_factory):
    """A real S3 server on the cluster's bridge address: the snapshot CronJob's pods reach it across the pod
    network. Yields (server, bucket, encryption key)."""
    from devkit.s3_server import start_s3_server

    server = start_s3_server(str(tmp_path_factory.mktemp("cluster-s3")), host=PUBLIC_URL.split("//")[1].split(":")[0])
    yield server, server.create_bucket(), secrets.token_bytes(32)
    server.stop()


@pytest.fixture(scope="module")
def prod_local(pulumi_backend, local_cluster, cluster_s3):
    import base64

    with open(os.path.join(REPO_ROOT, "Pulumi.prod-local.yaml")) as f:
        config = dict(yaml.safe_load(f)["config"])
    config.update({"vault-envvars:namespace": NS, "vault-envvars:jobsNamespace": JOBS_NS,
                   "vault-envvars:kubeconfig": local_cluster.kubeconfig,
                   "vault-envvars:serviceNodePort": str(NODE_PORT), "vault-envvars:servicePublicUrl": PUBLIC_URL})
    s3, bucket, key = cluster_s3
    config.update({"vault-envvars:backupBucket": bucket, "vault-envvars:backupEndpoint": s3.endpoint})
    backup_secrets = {"vault-envvars:backupAccessKeyId": s3.access_key_id,
                      "vault-envvars:backupSecretAccessKey": s3.secret_access_key,
                      "vault-envvars:backupEncryptionKey": base64.b64encode(key).decode()}
    # The dynamic providers (bootstrap, configuration) reach the pods with the kubeconfig in KUBECONFIG.
    s = ThrowawayStack("e2e/programs/prod_stack", {**pulumi_backend, "KUBECONFIG": local_cluster.kubeconfig})
    from pulumi import automation as auto
    s.stack.set_all_config({**{k: auto.ConfigValue(str(v)) for k, v in config.items()},
                            **{k: auto.ConfigValue(v, secret=True) for k, v in backup_secrets.items()}})
    kube_forward.use_kubeconfig(local_cluster.kubeconfig)
    try:
        started = time.monotonic()
        s.up()
        print(f"\nprod-local: one `up` from an empty namespace to a serving service: {time.monotonic() - started:.0f} s")
        outputs = {k: v.value for k, v in s.stack.outputs().items()}
        # Auto seal: the recovery shares are in the state only (no output); the drills' break-glass reads them.
        outputs = with_keys(s.name, outputs, env=s.env, cwd=s.work_dir)
        with open(os.path.join(str(local_cluster.kubeconfig) + ".ca-test.pem"), "w") as f:
            f.write(outputs["vault_ca_cert"])
        yield s, outputs, local_cluster
    finally:
        try:
            s.destroy()
        finally:
            kube_forward.use_kubeconfig(None)
            run_cluster_sh("volumes")  # the claims of the deleted namespace: their volumes offered again


def pods(cluster, selector: str) -> list[dict]:
    out = kubectl(cluster, "-n", NS, "get", "pods", "-l", selector, "-o", "json").stdout
    return json.loads(out)["items"]


def exec_in(cluster, pod: str, *command: str) -> str:
    return kubectl(cluster, "-n", NS, "exec", pod, "--", *command).stdout


def test_one_up_gives_three_unsealed_voters_on_three_nodes(prod_local):
    s, outputs, cluster = prod_local
    vault_pods = pods(cluster, "app.kubernetes.io/name=vault")
    assert len(vault_pods) == 3
    assert len({p["spec"]["nodeName"] for p in vault_pods}) == 3  # the required anti-affinity, met
    ca = outputs["vault_ca_cert"]
    for address in outputs["vault_nodes"]:
        status = vault_ops.seal_status(address, ca=ca)
        assert status["initialized"] and not status["sealed"], address
    # One cluster: one active node, two standbys that forward to it (health needs no token).
    health = [vault_ops.client(a, ca=ca).sys.read_health_status(standby_ok=True, method="GET")
              for a in outputs["vault_nodes"]]
    assert sorted(h["standby"] for h in health) == [False, True, True], health
    assert len({h["cluster_id"] for h in health}) == 1
    # prod-local's static seal: every pod unseals itself. No share is an output: the stack says where they are
    # (its state, a Pulumi secret), five recovery shares; no root token is exported (it was revoked).
    assert {vault_ops.seal_status(a, ca=ca)["type"] for a in outputs["vault_nodes"]} == {"static"}
    assert outputs["vault_seal"] == "static" and "vault_unseal_keys" not in outputs
    assert "state only" in outputs["vault_recovery_keys_location"]
    assert "vault_root_token" not in outputs and len(keys_of(outputs)) == 5
    # The generated seal key lives in the Secret the pods mount, never in clear in the stack's state.
    secret = json.loads(kubectl(cluster, "-n", NS, "get", "secret", "vault-seal-key", "-o", "json").stdout)["data"]
    key_hex = base64.b64decode(secret["key"]).decode()
    assert len(bytes.fromhex(key_hex)) == 32
    for form in (key_hex, secret["key"], *keys_of(outputs)):
        assert not s.stored_text_contains(form)


def test_namespaces_enforce_restricted_pod_security_and_every_pod_runs(prod_local):
    """The running cluster's API server enforces `restricted` on the Vault/service namespace and the jobs'
    one: every pod of the stack was admitted and runs, and a privileged pod is refused in each."""
    _, _, cluster = prod_local
    for ns in (NS, JOBS_NS):
        labels = json.loads(kubectl(cluster, "get", "namespace", ns, "-o", "json").stdout)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted", ns
        container = {"name": "c", "image": "localhost/vault-envvars/debian-python:bookworm-r2",
                     "securityContext": {"privileged": True}}
        privileged = json.dumps({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [container]},
                                 "metadata": {"name": "psa-privileged", "namespace": ns}})
        refused = kubectl(cluster, "create", "-f", "-", stdin=privileged, check=False)
        assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr
    running = json.loads(kubectl(cluster, "-n", NS, "get", "pods", "-o", "json").stdout)["items"]
    phases = {p["metadata"]["name"]: p["status"]["phase"] for p in running}
    assert sorted(n for n, phase in phases.items() if re.fullmatch(r"vault-\d", n) and phase == "Running") == \
        ["vault-0", "vault-1", "vault-2"], phases
    assert sum(name.startswith("envvars-") and phase == "Running" for name, phase in phases.items()) == 2, phases


def test_the_service_runs_a_job_with_a_users_variable_through_the_node_port(prod_local):
    _, outputs, cluster = prod_local
    assert requests.get(f"{PUBLIC_URL}/readyz", timeout=10).status_code == 200
    ca_file = cluster.kubeconfig + ".ca-test.pem"
    token = id_token(outputs, "alice", ca_file)
    auth = {"Authorization": f"Bearer {token}"}
    created = requests.post(f"{PUBLIC_URL}/api/v2/user/env-vars", headers=auth, timeout=20,
                            json={"name": "K8S_CANARY", "value": CANARY, "description": "e2e"})
    assert created.status_code == 201, created.text
    job = requests.post(f"{PUBLIC_URL}/api/v2/execution", headers=auth, timeout=20, json={
        # The value's digest, not the value: the command is stored, and the output would be redacted.
        "command": ["sh", "-c", "python3 -c 'import hashlib, os; "
                    "print(hashlib.sha256(os.environb[b\"K8S_CANARY\"]).hexdigest())'; "
                    "ls /var/run/secrets/kubernetes.io 2>/dev/null || echo no-token"],
        "env_var_ids": [created.json()["id"]]})
    assert job.status_code == 202, job.text
    state = _finished(auth, job.json()["id"])
    assert state["status"] == "succeeded" and state["exit_code"] == 0, state
    # Byte-exact value, and no service-account token in the job's pod.
    assert state["output"].split() == [hashlib.sha256(CANARY.encode()).hexdigest(), "no-token"], state
    # The value lives in Vault only: not in the service's logs, nor in the database.
    logs = kubectl(cluster, "-n", NS, "logs", "-l", "app.kubernetes.io/name=envvars", "--tail=-1").stdout
    assert CANARY not in logs
    dump = exec_in(cluster, "postgres-0", "pg_dumpall", "--data-only", "-U", "postgres")
    assert "K8S_CANARY" in dump and CANARY not in dump


def _finished(auth: dict, execution_id: str, timeout: float = 180) -> dict:
    deadline, state = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        state = requests.get(f"{PUBLIC_URL}/api/v2/execution/{execution_id}", headers=auth, timeout=20).json()
        if state["status"] in ("succeeded", "failed", "cancelled", "timed_out"):
            break
        time.sleep(1)
    return state


def test_encoded_forms_of_a_value_never_reach_the_stored_output_of_a_kubernetes_job(prod_local):
    """The encoding canary of tests/service/test_api.py on the kubernetes backend: a Job in the cluster prints
    base64, hex, percent- and JSON-encoded forms of each value; none is stored, the digest proves it ran."""
    _, outputs, cluster = prod_local
    auth = {"Authorization": f"Bearer {id_token(outputs, 'alice', cluster.kubeconfig + '.ca-test.pem')}"}
    canary = f"c4n4ry-{secrets.token_hex(6)} \"q\" é/+~?>\nsecond-line-{secrets.token_hex(4)}"
    ids = []
    for name, value in (("CANARY", canary), ("FLAG", "on")):
        r = requests.post(f"{PUBLIC_URL}/api/v2/user/env-vars", headers=auth, timeout=20,
                          json={"name": name, "value": value})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    job = requests.post(f"{PUBLIC_URL}/api/v2/execution", headers=auth, timeout=20, json={
        "command": ["python3", "-c", PRINT_ENCODED, "CANARY", "FLAG"], "env_var_ids": ids})
    assert job.status_code == 202, job.text
    done = _finished(auth, job.json()["id"])
    assert done["status"] == "succeeded", done
    lines = done["output"].splitlines()
    assert f"CANARY sha256 {hashlib.sha256(canary.encode()).hexdigest()}" in lines
    forms = [line.split(" ", 1)[1] for line in lines if line.startswith("CANARY ") and "sha256" not in line]
    assert forms and set(forms) == {"[redacted:CANARY]"}, forms
    assert done["unredacted_env_vars"] == ["FLAG"] and "FLAG b24=" in lines


def test_the_snapshot_cronjob_runs_and_verifies_a_snapshot(prod_local, cluster_s3, tmp_path):
    from infra.agents import backup_store as bs
    from infra.agents import snapshot_agent

    s, _, cluster = prod_local
    kubectl(cluster, "-n", NS, "create", "job", "snapshot-now", "--from=cronjob/vault-snapshots")
    kubectl(cluster, "-n", NS, "wait", "--for=condition=Complete", "job/snapshot-now", "--timeout=180s",
            timeout=200)
    report = kubectl(cluster, "-n", NS, "logs", "job/snapshot-now").stdout
    assert '"status": "ok"' in report or '"status":"ok"' in report, report
    # ... and uploaded it across the pod network, encrypted, to the S3 server on the bridge.
    s3, bucket, key = cluster_s3
    store = bs.StoreSettings(bucket=bucket, prefix=f"vault-envvars/{s.name}/", endpoint=s3.endpoint,
                             access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key)
    (name,) = bs.list_backups(bs.client(store), store, "snapshots")
    (tmp_path / "from-bucket.snap").write_bytes(bs.fetch(bs.client(store), store, key, name))
    assert snapshot_agent.verify_snapshot(str(tmp_path / "from-bucket.snap"))["index"] > 0


def test_prometheus_scrapes_every_vault_pod_each_replica_and_the_snapshot_push(prod_local):
    """Prometheus in the cluster, reached through the Kubernetes API as `make up`'s check does: the three Vault
    pods are up targets named by pod, each service replica is one, and the snapshot job's push arrived."""
    from tools.stack_check import http_url, vault_targets

    _, outputs, cluster = prod_local
    prometheus = http_url(outputs["prometheus_url"])
    kubectl(cluster, "-n", NS, "create", "job", "snapshot-push", "--from=cronjob/vault-snapshots")
    kubectl(cluster, "-n", NS, "wait", "--for=condition=Complete", "job/snapshot-push", "--timeout=180s", timeout=200)
    deadline, seen = time.monotonic() + 90, {}
    while time.monotonic() < deadline:
        try:
            targets = requests.get(f"{prometheus}/api/v1/targets", params={"state": "active"}, timeout=10).json()
            pushed = requests.get(f"{prometheus}/api/v1/query", timeout=10,
                                  params={"query": 'vault_snapshot_last_success{job="vault-snapshots"}'}).json()
            seen = {"vault": vault_targets(outputs["prometheus_url"]),
                    "service": [t["health"] for t in targets["data"]["activeTargets"]
                                if t["labels"]["job"] == "envvars-service"],
                    "pushed": pushed["data"]["result"]}
            if seen["vault"] == {f"vault-{i}": "up" for i in range(3)} and seen["service"] == ["up", "up"] \
                    and seen["pushed"]:
                break
        except requests.RequestException as e:
            seen = {"error": str(e)}
        time.sleep(3)
    assert seen.get("vault") == {f"vault-{i}": "up" for i in range(3)}, seen
    assert seen["service"] == ["up", "up"] and seen["pushed"], seen
    assert abs(float(seen["pushed"][0]["value"][1]) - time.time()) < 900, seen


def test_vault_pods_as_testinfra_would_check_them(prod_local):
    _, _, cluster = prod_local
    pod = "vault-0"
    assert exec_in(cluster, pod, "id", "-u").strip() == "100"
    refused = kubectl(cluster, "-n", NS, "exec", pod, "--", "sh", "-c", "touch /usr/x", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr + refused.stdout
    # Listening TCP ports, from /proc/net/tcp (state 0A): the API and the cluster port only.
    listening = exec_in(cluster, pod, "python3", "-c", (
        "print(sorted({int(l.split()[1].split(':')[1], 16) for l in open('/proc/net/tcp').readlines()[1:] "
        "if l.split()[3] == '0A'} | {int(l.split()[1].split(':')[1], 16) "
        "for l in open('/proc/net/tcp6').readlines()[1:] if l.split()[3] == '0A'}))"))
    assert json.loads(listening) == [8200, 8201], listening
    # The key: the group's (fsGroup) to read, nobody else's; what Vault writes: its user's only.
    files = ("/bao/tls/tls.key", "/bao/data/vault.db", "/bao/data/raft/raft.db", "/bao/data/raft", "/bao/logs/audit.log")
    modes = dict(line.split(" ", 1) for line in exec_in(cluster, pod, "stat", "-L", "-c", "%n %a %U", *files).splitlines())
    assert modes == {"/bao/tls/tls.key": "440 root", "/bao/data/vault.db": "600 bao", "/bao/data/raft/raft.db": "600 bao",
                     "/bao/data/raft": "2700 bao", "/bao/logs/audit.log": "600 bao"}, modes
    volumes = exec_in(cluster, pod, "stat", "-c", "%a", "/bao/data", "/bao/logs").split()
    assert all(int(m, 8) & 0o007 == 0 for m in volumes), volumes  # the volumes' roots: nothing for others
    audit = exec_in(cluster, pod, "sh", "-c", "wc -c < /bao/logs/audit.log")
    assert int(audit.strip()) > 0
    # TLS on both ports, through the API server's port-forward.
    for port in (8200, 8201):
        local = kube_forward.local_port(kube_forward.pod_address(NS, pod, port))
        with socket.create_connection(("127.0.0.1", local), timeout=10) as raw:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            try:
                with ctx.wrap_socket(raw) as tls:
                    assert tls.version() in ("TLSv1.2", "TLSv1.3")
            except ssl.SSLError as e:
                # Raft's port answers only its own cluster's names and certificates, with a TLS alert; a
                # plaintext server would fail the handshake with WRONG_VERSION_NUMBER instead.
                assert port == 8201, e
                assert str(e).startswith("[SSL: TLSV1_") and "WRONG_VERSION_NUMBER" not in str(e), e


def test_a_second_up_changes_nothing(prod_local):
    s, _, _ = prod_local
    assert s.changes_of_second_up() == {}


def _health(outputs: dict) -> list[dict]:
    ca = outputs["vault_ca_cert"]
    return [vault_ops.client(a, ca=ca, timeout=5).sys.read_health_status(standby_ok=True, method="GET")
            for a in outputs["vault_nodes"]]


def test_failover_loses_no_acknowledged_write_and_the_pod_unseals_itself(prod_local):
    """A client writes through the service while the active Vault pod is deleted; every write the service
    acknowledged is there afterwards, value included; the pod comes back unsealed with no `up` (static seal)."""
    _, outputs, cluster = prod_local
    auth = {"Authorization": f"Bearer {id_token(outputs, 'bob', cluster.kubeconfig + '.ca-test.pem')}"}
    active = next(f"vault-{i}" for i, h in enumerate(_health(outputs)) if not h["standby"])
    acknowledged: dict[str, str] = {}  # id -> value
    refused, slowest, deleted_at, i = 0, 0.0, 0.0, 0
    # Writes before, during and for 30 s after the deletion (the pod's pre-stop delay, its step-down, the
    # election), under the per-user rate limit (120/minute).
    while not deleted_at or time.monotonic() - deleted_at < 30:
        i += 1
        value = f"value-{i}-{os.urandom(6).hex()}"
        sent = time.monotonic()
        try:
            r = requests.post(f"{PUBLIC_URL}/api/v2/user/env-vars", headers=auth, timeout=30,
                              json={"name": f"FAILOVER_{i}", "value": value})
            ok = r.status_code == 201
        except requests.RequestException:
            ok = False
        if ok:
            acknowledged[r.json()["id"]] = value
            if deleted_at:
                slowest = max(slowest, time.monotonic() - sent)
        else:
            refused += 1
        if i == 5:
            kubectl(cluster, "-n", NS, "delete", "pod", active, "--wait=false")
            deleted_at = time.monotonic()
        time.sleep(0.7)
    leader = vault_ops.wait_until(lambda: pods(cluster, "openbao-active=true"), 60, "a new active pod")
    assert [p["metadata"]["name"] for p in leader] != [active], "the deleted pod is still the leader"
    print(f"\nfailover: {active} deleted while a client wrote through the service: {refused} writes refused, "
          f"{len(acknowledged)} acknowledged, the slowest acknowledged write after the deletion took {slowest:.1f} s; "
          f"new leader {leader[0]['metadata']['name']}")
    assert 0 < len(acknowledged) <= 100  # one job reads them all back
    # Every acknowledged write is there, value included (a job reads them all back from Vault).
    ids = list(acknowledged)
    names = {f"FAILOVER_{n}" for n in range(1, i + 1)}
    listing = requests.get(f"{PUBLIC_URL}/api/v2/user/env-vars", headers=auth, params={"q": "FAILOVER_", "limit": 1000},
                           timeout=15).json()
    by_id = {e["id"]: e["name"] for e in listing["items"]}
    assert set(ids) <= set(by_id), "an acknowledged env var is missing"
    assert set(by_id.values()) <= names  # and no write that was refused left a half-made env var
    job = requests.post(f"{PUBLIC_URL}/api/v2/execution", headers=auth, timeout=20, json={
        "command": ["python3", "-c", "import hashlib, os; print(' '.join(hashlib.sha256(os.environb[k]).hexdigest() "
                    "for k in sorted(k for k in os.environb if k.startswith(b'FAILOVER_'))))"],
        "env_var_ids": ids}).json()
    while job["status"] in ("queued", "running"):
        time.sleep(1)
        job = requests.get(f"{PUBLIC_URL}/api/v2/execution/{job['id']}", headers=auth, timeout=20).json()
    assert job["status"] == "succeeded", job
    expected = [hashlib.sha256(acknowledged[x].encode()).hexdigest()
                for x in sorted(ids, key=lambda x: by_id[x])]
    assert job["output"].split() == expected
    # The restarted pod unsealed itself (no `up`) and rejoined the same cluster.
    health = vault_ops.wait_until(lambda: (h := _health(outputs)) and all(not x["sealed"] for x in h) and h,
                                  60, "every pod unsealed, with no `up`")
    assert sorted(h["standby"] for h in health) == [False, True, True]
    assert len({h["cluster_id"] for h in health}) == 1


# --- self-healing: pods restarted by anything unseal themselves (static seal), no `up` ---------------------

def _pod_back(nodes: KubeNodes, i: int, token: str) -> bool:
    """Pod i unsealed, Ready (in the Services again) and every voter healthy."""
    if vault_ops.seal_status(nodes.nodes[i], nodes.verify, timeout=3).get("sealed"):
        return False
    return rejoined(nodes, i, token)


def test_a_deleted_vault_pod_unseals_itself_and_is_a_healthy_voter_again(prod_local):
    """The active pod deleted (the hardest single case: an election too): its successor unseals itself and
    is a healthy voter again with no `up`, within the 30 s target."""
    _, outputs, cluster = prod_local
    nodes = _nodes(outputs, cluster)
    with drill_token(nodes, outputs) as token:
        vault_ops.wait_until(lambda: all(_pod_back(nodes, i, token) for i in range(3)), 120, "three healthy voters")
        victim = vault_ops.active_index(nodes.nodes, nodes.verify)
        uid = nodes.core.read_namespaced_pod(nodes.pods[victim], NS).metadata.uid
        deleted = time.monotonic()
        kubectl(cluster, "-n", NS, "delete", "pod", nodes.pods[victim], "--wait=false")
        vault_ops.wait_until(lambda: nodes.core.read_namespaced_pod(nodes.pods[victim], NS).metadata.uid != uid,
                             60, "the pod's successor", interval=0.5)
        unsealed = vault_ops.wait_until(
            lambda: not vault_ops.seal_status(nodes.nodes[victim], nodes.verify, timeout=3)["sealed"]
            and time.monotonic(), 90, f"{nodes.pods[victim]} unsealed by itself", interval=0.5) - deleted
        back = vault_ops.wait_until(lambda: _pod_back(nodes, victim, token) and time.monotonic(), 90,
                                    f"{nodes.pods[victim]} Ready and a healthy voter", interval=0.5) - deleted
    print(f"\none pod deleted ({nodes.pods[victim]}, the active one), no `up`: unsealed {unsealed:.1f} s after the "
          f"delete, Ready and a healthy voter (three healthy voters) {back:.1f} s after it")
    assert back <= 30, back


def test_all_three_vault_pods_deleted_at_once_the_cluster_heals_with_no_acknowledged_write_lost(prod_local):
    """Every Vault pod deleted at once while a client writes through the service: the three successors
    unseal themselves, elect, and the service serves again, with no `up`; every value Vault held before is
    there by hash, and every write the service acknowledged is there with its value."""
    _, outputs, cluster = prod_local
    nodes = _nodes(outputs, cluster)
    auth = {"Authorization": f"Bearer {id_token(outputs, 'alice', cluster.kubeconfig + '.ca-test.pem')}"}
    acknowledged: dict[str, str] = {}  # id -> value
    stop, outage = threading.Event(), {"first_failure": 0.0, "last_failure": 0.0, "failed": 0}

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            value = f"heal-{n}-{os.urandom(6).hex()}"
            try:
                r = requests.post(f"{PUBLIC_URL}/api/v2/user/env-vars", headers=auth, timeout=30,
                                  json={"name": f"HEAL_{n}_{os.urandom(2).hex()}", "value": value})
                ok = r.status_code == 201
            except requests.RequestException:
                ok = False
            if ok:
                acknowledged[r.json()["id"]] = value
            else:
                outage["failed"] += 1
                outage["last_failure"] = time.monotonic()
                outage["first_failure"] = outage["first_failure"] or outage["last_failure"]
            time.sleep(0.8)  # under the per-user rate limit (120/minute)

    with drill_token(nodes, outputs) as token:
        vault_ops.wait_until(lambda: all(_pod_back(nodes, i, token) for i in range(3)), 120, "three healthy voters")
        leader = nodes.nodes[vault_ops.active_index(nodes.nodes, nodes.verify)]
        before = kv_hashes(vault_ops.client(leader, token, nodes.verify, timeout=30), "secret")
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(3)
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(cluster, "app.kubernetes.io/name=vault")}
    deleted = time.monotonic()
    kubectl(cluster, "-n", NS, "delete", "pod", *sorted(uids), "--wait=false")
    try:
        # Serving again: a new active pod answers and a write through the service is acknowledged after it.
        vault_ops.wait_until(lambda: {p["metadata"]["uid"] for p in pods(cluster, "app.kubernetes.io/name=vault")}
                             .isdisjoint(uids.values()), 90, "three new pods", interval=0.5)
        unsealed = vault_ops.wait_until(lambda: all(not h["sealed"] for h in _health(outputs)) and time.monotonic(),
                                        150, "three pods unsealed by themselves", interval=0.5) - deleted
        count = len(acknowledged)
        serving = vault_ops.wait_until(
            lambda: len(acknowledged) > count and requests.get(f"{PUBLIC_URL}/readyz", timeout=5).status_code == 200
            and time.monotonic(), 150, "the service acknowledging writes again", interval=0.5) - deleted
        time.sleep(5)
    finally:
        stop.set()
        thread.join(60)
    with drill_token(nodes, outputs) as token:
        healed = vault_ops.wait_until(lambda: all(_pod_back(nodes, i, token) for i in range(3)) and time.monotonic(),
                                      150, "three Ready, healthy voters") - deleted
        leader = nodes.nodes[vault_ops.active_index(nodes.nodes, nodes.verify)]
        after = kv_hashes(vault_ops.client(leader, token, nodes.verify, timeout=30), "secret")
    print(f"\nall three pods deleted at once, no `up`: every pod unsealed {unsealed:.1f} s after the delete, the service "
          f"acknowledging writes {serving:.1f} s after it (writes refused meanwhile: {outage['failed']}), three Ready "
          f"healthy voters {healed:.1f} s after it; {len(before)} values before, {len(acknowledged)} writes "
          f"acknowledged around it")
    # Every value Vault held before, unchanged; every acknowledged write there with its value.
    assert before and {k: after.get(k) for k in before} == before
    by_id = {k.rsplit("/", 1)[1]: h for k, h in after.items()}
    missing = [i for i, v in acknowledged.items() if by_id.get(i) != hashlib.sha256(v.encode()).hexdigest()]
    assert acknowledged and not missing, f"{len(missing)} acknowledged writes lost"
    assert healed <= 90, healed


# --- operations on the running stack: each leaves the cluster whole (three unsealed voters) -------------

def _nodes(outputs: dict, cluster) -> KubeNodes:
    return KubeNodes(NS, "vault", outputs["vault_nodes"], cluster.kubeconfig + ".ca-test.pem")


class _ServiceClient:
    """Writes and reads env vars through the service in a thread until stopped, counting each failure."""

    def __init__(self, outputs: dict, cluster, user: str):
        self.auth = {"Authorization": f"Bearer {id_token(outputs, user, cluster.kubeconfig + '.ca-test.pem')}"}
        self.ok, self.failed, self.errors, self.slowest = 0, 0, [], 0.0  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            sent = time.monotonic()
            try:
                r = requests.post(f"{PUBLIC_URL}/api/v2/user/env-vars", headers=self.auth, timeout=30,
                                  json={"name": f"ROLL_{n}_{os.urandom(3).hex()}", "value": os.urandom(8).hex()})
                read = requests.get(f"{PUBLIC_URL}/api/v2/user/env-vars/{r.json()['id']}", headers=self.auth,
                                    timeout=30) if r.status_code == 201 else r
                good = r.status_code == 201 and read.status_code == 200
            except (requests.RequestException, ValueError) as e:
                good, r = False, e  # type: ignore[assignment]
            if good:
                self.ok += 1
                self.slowest = max(self.slowest, time.monotonic() - sent)
            else:
                self.failed += 1
                self.errors.append(f"{time.strftime('%H:%M:%S')} {getattr(r, 'status_code', '')} {getattr(r, 'text', r)}"[:300])
            time.sleep(1.2)  # under the per-user rate limit (120/minute), two requests a round

    def __enter__(self) -> "_ServiceClient":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(60)


def test_rolling_upgrade_replaces_standbys_first_the_leader_last_with_the_service_serving(prod_local, tmp_path):
    """A config change (the Vault pods' CPU request) reaches the StatefulSet; OnDelete leaves the pods as
    they were; tools/vault_upgrade.py replaces them one at a time while a client writes and reads."""
    s, outputs, cluster = prod_local
    nodes = _nodes(outputs, cluster)
    leader = vault_ops.active_index(nodes.nodes, nodes.verify)
    from pulumi import automation as auto
    s.stack.set_config("vault-envvars:vaultCpuRequest", auto.ConfigValue("200m"))
    s.up()
    sts = nodes.apps.read_namespaced_stateful_set("vault", NS)
    assert sts.status.update_revision != sts.status.current_revision
    assert all(nodes.revision(i) != sts.status.update_revision for i in range(3))  # OnDelete: not rolled yet
    with _ServiceClient(outputs, cluster, "alice") as traffic, drill_token(nodes, outputs) as token:
        code, report = vault_upgrade.run(nodes, token, keys_of(outputs), str(tmp_path))
        time.sleep(5)  # and a little after the last pod
    print(f"\nrolling upgrade: {report.get('pods')} s per pod, order {report.get('replaced')}; through the "
          f"service meanwhile: {traffic.ok} write+read rounds ok (the slowest {traffic.slowest:.1f} s), "
          f"{traffic.failed} failed {traffic.errors[:5]}")
    assert code == 0, report
    assert report["replaced"][-1] == f"vault-{leader}" and len(report["replaced"]) == 3  # the leader last
    assert all(nodes.revision(i) == sts.status.update_revision for i in range(3))
    assert traffic.ok > 10 and traffic.failed == 0, traffic.errors
    cpu = nodes.core.read_namespaced_pod("vault-0", NS).spec.containers[0].resources.requests["cpu"]
    assert cpu == "200m"


def test_drain_evicts_one_vault_pod_at_a_time(prod_local):
    """`kubectl drain` of a node evicts its Vault pod; while that pod is not back (its volume is on the
    cordoned node), the PDB refuses to evict another one, so a second drain cannot finish."""
    _, outputs, cluster = prod_local
    nodes = _nodes(outputs, cluster)
    postgres_node = pods(cluster, "app.kubernetes.io/name=envvars-postgres")[0]["spec"]["nodeName"]
    vault_nodes = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods(cluster, "app.kubernetes.io/name=vault")}
    first, second = sorted(n for n in vault_nodes.values() if n != postgres_node)[:2]
    by_node = {n: p for p, n in vault_nodes.items()}
    drain = ["drain", "--ignore-daemonsets", "--delete-emptydir-data", "--grace-period=20"]
    try:
        kubectl(cluster, *drain, "--timeout=120s", first, timeout=150)
        evicted = by_node[first]
        blocked = kubectl(cluster, *drain, "--timeout=25s", second, timeout=60, check=False)
        assert blocked.returncode != 0
        assert "disruption budget" in blocked.stdout + blocked.stderr, blocked.stderr[-1000:]
        assert next(p for p in pods(cluster, "app.kubernetes.io/name=vault")
                    if p["metadata"]["name"] == by_node[second])["status"]["phase"] == "Running"
        pending = next(p for p in pods(cluster, "app.kubernetes.io/name=vault") if p["metadata"]["name"] == evicted)
        assert pending["status"]["phase"] == "Pending"  # its volume is on the cordoned node
        print(f"\ndrain: {first} drained ({evicted} evicted); drain of {second} refused by the PDB")
    finally:
        kubectl(cluster, "uncordon", first, second)
    vault_ops.unseal_until_serving(nodes.nodes, keys_of(outputs), nodes.verify, timeout=180)
    with drill_token(nodes, outputs) as token:
        vault_ops.wait_until(lambda: vault_ops.healthy_voters(nodes.nodes[vault_ops.active_index(
            nodes.nodes, nodes.verify)], token, nodes.verify) == 3, 180, "three healthy voters again")


def test_node_loss_drill_the_active_pod_and_its_volume_claims_deleted(prod_local, tmp_path):
    _, outputs, cluster = prod_local
    nodes = _nodes(outputs, cluster)
    victim = vault_ops.active_index(nodes.nodes, nodes.verify)
    claim = nodes.core.read_namespaced_persistent_volume_claim(f"data-vault-{victim}", NS).metadata.uid
    with drill_token(nodes, outputs) as token:
        code, report = raft_drills.run("node-loss", nodes, token, keys_of(outputs), str(tmp_path), -1,
                                       lose_volume=True)
    print(f"\nnode loss on Kubernetes ({report.get('node')}, pod and claims deleted): a write after "
          f"{report.get('seconds_to_first_write')} s, an empty pod a healthy voter after {report.get('seconds_to_rejoin')} s")
    assert code == 0, report
    assert report["was_active"] and report["volume_lost"] and report["values_verified"] == report["values"] > 0
    assert nodes.core.read_namespaced_persistent_volume_claim(f"data-vault-{victim}", NS).metadata.uid != claim


# A known failure, open under issue 31 (auto-unseal): with prod-local's static seal the lost pods' successors
# unseal themselves, so the drill now holds them down (their nodes cordoned) and recovers the survivor in
# place; the survivor then serves every value alone (measured 28.8 s), but the rebuilt pods stay Pending
# (their new volume claims, seen 2026-12-07). Kept running, reported as XFAIL until it passes.
@pytest.mark.xfail(reason="quorum-loss drill on an auto-sealed cluster: the rebuilt pods are not scheduled (issue 31)",
                   strict=False)
def test_quorum_loss_drill_two_pods_and_their_claims_lost(prod_local, tmp_path):
    _, outputs, cluster = prod_local
    nodes = _nodes(outputs, cluster)
    with drill_token(nodes, outputs) as token:
        code, report = raft_drills.run("quorum-loss", nodes, token, keys_of(outputs), str(tmp_path), 0)
    print(f"\nquorum loss on Kubernetes: vault-0 alone serving after {report.get('rto_seconds')} s (peers.json), "
          f"three voters after {report.get('seconds_to_full_cluster')} s more")
    assert code == 0, report
    assert report["outage_confirmed"] and report["verified_on_survivor"] == report["values_verified"] > 0
    # The service kept its credentials through it: it still serves.
    assert requests.get(f"{PUBLIC_URL}/readyz", timeout=10).status_code == 200


def test_restore_drill_into_a_fresh_namespace(prod_local, tmp_path):
    _, outputs, cluster = prod_local
    nodes = _nodes(outputs, cluster)
    auth = {"Authorization": f"Bearer {id_token(outputs, 'bob', cluster.kubeconfig + '.ca-test.pem')}"}
    for n in range(3):  # values of its own, whatever ran before
        r = requests.post(f"{PUBLIC_URL}/api/v2/user/env-vars", headers=auth, timeout=30,
                          json={"name": f"RESTORED_{n}", "value": os.urandom(12).hex()})
        assert r.status_code == 201, r.text
    try:
        with drill_token(nodes, outputs) as token:
            code, report = drill_tool.drill(outputs, "prod-local", str(tmp_path), kv_mount="secret", token=token,
                                            source=KubeSource(outputs, cluster.kubeconfig))
    finally:
        run_cluster_sh("volumes")  # the throwaway namespace's volumes offered again
    print(f"\nrestore drill on Kubernetes: RTO {report.get('rto_seconds')} s, {report.get('values_verified')} values "
          f"verified, throwaway cluster up in {report.get('cluster_seconds')} s; service check {report.get('service_check')}")
    assert code == 0, report
    assert report["values_verified"] == report["env_vars_in_database"] > 0
    assert report["service_check"]["rows_without_value"] == report["service_check"]["values_without_row"] == 0
    assert report["service_check"]["rows_with_another_vault_path"] == 0
    left = json.loads(kubectl(cluster, "get", "namespaces", "-o", "json").stdout)["items"]
    assert not [n for n in left if n["metadata"]["name"].startswith("drill-")]


def test_a_shamir_cluster_with_data_migrates_to_a_transit_seal_outside_the_cluster(prod_local, tmp_path, toolchain):
    """tools/vault_seal_migrate.py on the stack's own Vault component, Shamir, with data, in a namespace of its
    own (prod-local itself is auto-sealed from its first `up`), to the transit seal of another OpenBao that
    runs outside the cluster, on this machine (reached by the pods at the bridge address, over TLS with its own
    CA from a Secret, with a token that may only encrypt and decrypt with its key): a verified snapshot first,
    the seal applied by an update of its stack (no pod restarted by it), each pod replaced and unsealed with
    `migrate`, the leader last, while a client writes and reads through the active Service; then every pod
    transit-sealed, every value verified by hash; a deleted pod unseals itself through the transit server, and
    with that server stopped a deleted pod stays sealed (fail closed)."""
    import pulumi
    import pulumi_kubernetes as k8s

    from devkit.vault_servers import TRANSIT_KEY, start_transit_server
    from infra.vault_k8s import VaultKubernetes, VaultKubernetesArgs
    from infra.vault_seal import TransitSealArgs
    from tools import vault_seal_migrate

    _, _, cluster = prod_local
    namespace, seal = f"t-seal-{secrets.token_hex(3)}", {"args": None}
    with open(os.path.join(REPO_ROOT, "Pulumi.prod-local.yaml")) as f:
        image = yaml.safe_load(f)["config"]["vault-envvars:vaultImage"]
    transit, transit_token = start_transit_server(toolchain["bao"], str(tmp_path / "transit"), tls_host="10.244.0.1")

    def program():
        provider = k8s.Provider("k8s", kubeconfig=cluster.kubeconfig)
        opts = pulumi.ResourceOptions(provider=provider)
        ns = k8s.core.v1.Namespace("ns", metadata={"name": namespace}, opts=opts)
        secrets_: list = []
        if seal["args"]:
            in_ns = pulumi.ResourceOptions(provider=provider, depends_on=[ns])
            secrets_ = [k8s.core.v1.Secret("transit-token", metadata={"name": "vault-transit-token", "namespace": namespace},
                                           string_data={"token": pulumi.Output.secret(transit_token)}, opts=in_ns),
                        k8s.core.v1.Secret("transit-ca", metadata={"name": "vault-transit-ca", "namespace": namespace},
                                           string_data={"ca.pem": transit.ca_pem}, opts=in_ns)]
        c = VaultKubernetes("vault", VaultKubernetesArgs(
            namespace=namespace, image=image, storage_class="local", data_storage="1Gi", audit_storage="1Gi",
            seal=seal["args"]), opts=pulumi.ResourceOptions(provider=provider, depends_on=[ns, *secrets_]))
        pulumi.export("nodes", c.node_addresses)
        pulumi.export("ca", c.ca_cert_pem)

    stack = None
    try:
        stack, addresses, ca_pem = throwaway_cluster(str(tmp_path / "stack"), program)
        ca = str(tmp_path / "ca.pem")
        with open(ca, "w") as f:
            f.write(ca_pem)
        vault_ops.wait_until(lambda: vault_ops.seal_status(addresses[0], ca, timeout=5), 180, "the first pod")
        keys, root = vault_ops.initialize(addresses[0], 5, 3, ca)
        leader = vault_ops.unseal_until_serving(addresses, keys, ca, timeout=180)
        vault_ops.wait_until(lambda: vault_ops.healthy_voters(leader, root, ca) == 3, 180, "three voters")
        c = vault_ops.client(leader, root, ca, timeout=30)
        c.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        for n in range(20):
            vault_ops.wait_until(lambda n=n: c.secrets.kv.v2.create_or_update_secret(
                f"users/u{n % 2}/{n}", {"value": os.urandom(12).hex()}, mount_point="secret"), 30, "a write")
        nodes = KubeNodes(namespace, "vault", addresses, ca)
        traffic = {"ok": 0, "failed": 0}
        stop = threading.Event()

        def client_loop() -> None:  # writes and reads through the active Service, as clients in the cluster do
            svc = kube_forward.service_address(namespace, "vault-active", 8200)
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    kv = vault_ops.client(svc, root, ca, timeout=10).secrets.kv.v2
                    kv.create_or_update_secret(f"users/traffic/{n}", {"value": str(n)}, mount_point="secret")
                    got = kv.read_secret_version(f"users/traffic/{n}", mount_point="secret")["data"]["data"]["value"]
                    traffic["ok" if got == str(n) else "failed"] += 1
                except Exception:  # noqa: BLE001 (counted)
                    traffic["failed"] += 1
                time.sleep(1)

        def apply() -> None:
            seal["args"] = TransitSealArgs(address=transit.address, key_name=TRANSIT_KEY,
                                           token_secret_name="vault-transit-token", ca_secret_name="vault-transit-ca")
            stack.up(on_output=lambda _l: None)
            target = nodes.apps.read_namespaced_stateful_set("vault", namespace).status.update_revision
            assert all(nodes.revision(i) != target for i in range(3))  # OnDelete: no pod restarted by `up`

        thread = threading.Thread(target=client_loop, daemon=True)
        thread.start()
        try:
            code, report = vault_seal_migrate.run(nodes, root, keys, "transit", apply, str(tmp_path / "out"))
        finally:
            stop.set()
            thread.join(30)
        print(f"\nseal migration Shamir -> transit (an OpenBao outside the cluster): {report.get('pods')} s per pod, "
              f"{report.get('values_verified')}/{report.get('values')} values verified, a "
              f"{report.get('snapshot', {}).get('bytes')}-byte snapshot verified first; through the active Service "
              f"meanwhile {traffic['ok']} write+read rounds ok, {traffic['failed']} failed")
        assert code == 0, report
        assert report["seal_after"] == ["transit"] and report["values_verified"] == report["values"] >= 20
        assert os.path.exists(report["snapshot"]["path"])
        assert traffic["ok"] > 0
        # Auto-sealed now: a deleted pod comes back unsealed by itself, through the transit server.
        nodes.delete_pod(1)
        vault_ops.wait_until(lambda: not vault_ops.seal_status(addresses[1], ca, timeout=3)["sealed"], 90,
                             "vault-1 unsealed by itself")
        # Fail closed: the transit server gone, a deleted pod does not come back unsealed (OpenBao 2.7.2 does not
        # even start: it cannot set up its seal).
        transit.stop()
        nodes.delete_pod(2)
        time.sleep(15)
        try:
            unsealed = vault_ops.seal_status(addresses[2], ca, timeout=5)["sealed"] is False
        except requests.RequestException:
            unsealed = False
        assert not unsealed, "a pod unsealed with its transit server gone"
    finally:
        transit.stop()
        try:
            if stack:
                stack.destroy(on_output=lambda _l: None)
                stack.workspace.remove_stack(stack.name)
        finally:
            run_cluster_sh("volumes")
