"""infra/clients/kube_forward.py on a real cluster: bytes go both ways through the API server's port-forward to a
pod, a Service's address leads to a Ready pod it selects and moves to another one when that pod is
deleted, and a pod that is not there is a connection error with its reason."""
import os
import time
import uuid

import pytest
import requests
from kubernetes import client as kclient
from kubernetes import config as kconfig

from devkit.net import greet_and_echo
from infra.clients import kube_forward, vault_ops
from stacks.config import DEFAULT_BASE_IMAGE

pytestmark = [pytest.mark.e2e, pytest.mark.k8s]

# Says its pod's name, then echoes every byte back.
GREETER = """
import socket, threading
server = socket.create_server(("0.0.0.0", 8080))
def echo(conn):
    with conn:
        conn.sendall((socket.gethostname() + "\\n").encode())
        while data := conn.recv(65536):
            conn.sendall(data)
while True:
    conn, _ = server.accept()
    threading.Thread(target=echo, args=(conn,), daemon=True).start()
"""


@pytest.fixture(scope="module")
def api(local_cluster):
    kube_forward.use_kubeconfig(local_cluster.kubeconfig)
    yield kconfig.new_client_from_config(config_file=local_cluster.kubeconfig)
    kube_forward.use_kubeconfig(None)


@pytest.fixture(scope="module")
def greeters(api):
    """A namespace with two greeter pods behind the Service `greeter` (port 80 -> 8080)."""
    core = kclient.CoreV1Api(api)
    ns = f"t-forward-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    try:
        labels = {"app": "greeter"}
        for name in ("greeter-a", "greeter-b"):
            core.create_namespaced_pod(ns, {"metadata": {"name": name, "labels": labels}, "spec": {
                "terminationGracePeriodSeconds": 1, "automountServiceAccountToken": False,
                "containers": [{"name": "main", "image": DEFAULT_BASE_IMAGE, "imagePullPolicy": "Never",
                                "command": ["python3", "-c", GREETER],
                                "ports": [{"name": "echo", "containerPort": 8080}],
                                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}})
        core.create_namespaced_service(ns, {"metadata": {"name": "greeter"}, "spec": {
            "selector": labels, "ports": [{"port": 80, "targetPort": "echo"}]}})
        deadline = time.monotonic() + 180
        while not all(_ready(core.read_namespaced_pod(n, ns)) for n in ("greeter-a", "greeter-b")):
            assert time.monotonic() < deadline, "the greeter pods did not turn Ready in 180 s"
            time.sleep(1)
        yield ns, core
    finally:
        core.delete_namespace(ns)


def _ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def _talk(address: str, payload: bytes) -> tuple[str, bytes]:
    return greet_and_echo(kube_forward.local_port(address), payload, timeout=30)


def test_bytes_go_both_ways_through_the_api_server(greeters):
    ns, _ = greeters
    payload = os.urandom(4 << 20)
    assert _talk(f"k8s://{ns}/greeter-b:8080", payload) == ("greeter-b", payload)
    assert _talk(f"k8s://{ns}/greeter-a:8080", b"hello") == ("greeter-a", b"hello")
    # Connections at once, each a port-forward of its own.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: _talk(f"k8s://{ns}/greeter-a:8080", f"n{i}".encode() * 1000), range(16)))
    assert got == [("greeter-a", f"n{i}".encode() * 1000) for i in range(16)]


def test_a_service_address_moves_to_another_pod_when_its_pod_goes(greeters):
    ns, core = greeters
    address = f"k8s://{ns}/svc/greeter:80"
    first, echoed = _talk(address, b"ping")
    assert first in ("greeter-a", "greeter-b") and echoed == b"ping"
    core.delete_namespaced_pod(first, ns, grace_period_seconds=0)
    other = ({"greeter-a", "greeter-b"} - {first}).pop()
    assert _talk(address, b"pong") == (other, b"pong")


def test_a_pod_that_is_not_there_is_a_transient_connection_error(greeters):
    ns, _ = greeters
    address = f"k8s://{ns}/nobody-0:8200"
    with pytest.raises(requests.ConnectionError):
        vault_ops.seal_status(address, timeout=10)
    assert kube_forward.last_error(address) == f"port-forward to pod {ns}/nobody-0:8200: not found"
