"""infra/clients/kube_forward.py without a cluster: addresses, pass-through, the kubeconfig's sources, and the local
listeners with the Kubernetes client's port-forward and pod reads replaced by loopback stand-ins (a
"pod" is a server on 127.0.0.1), so the piping, the Service's pod choice and the failure paths run for real;
then the client's own port-forward against a stand-in API server that speaks its websocket protocol."""
import base64
import contextlib
import hashlib
import http.server
import json
import os
import re
import socket
import ssl
import struct
import threading

import pytest
import requests
from kubernetes import client as kclient
from kubernetes.client.exceptions import ApiException

from devkit.net import greet_and_echo
from infra.clients import kube_forward, vault_ops
from infra.clients.kube_forward import KubeForwardError, Target
from infra.providers.tls import make_bundle

pytestmark = pytest.mark.unit

KUBECONFIG = json.dumps({
    "apiVersion": "v1", "kind": "Config", "current-context": "t",
    "clusters": [{"name": "t", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "t", "user": {"token": "kube-token-never-shown"}}],
    "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
})


@pytest.mark.parametrize("address,target", [
    ("k8s://vault/vault-0:8200", Target("vault", "vault-0", 8200)),
    ("k8s://vault-prod/svc/vault-active:8200", Target("vault-prod", "vault-active", 8200, service=True)),
    ("k8s://ns/svc:80", Target("ns", "svc", 80)),  # a pod that happens to be called svc
    ("k8s://ns/web.v2-1:443", Target("ns", "web.v2-1", 443)),
])
def test_addresses_parse_and_print_back(address, target):
    assert kube_forward.parse(address) == target
    assert target.address == address


def test_address_builders():
    assert kube_forward.pod_address("vault", "vault-2", 8200) == "k8s://vault/vault-2:8200"
    assert kube_forward.service_address("vault", "vault-active", 8200) == "k8s://vault/svc/vault-active:8200"


@pytest.mark.parametrize("address", ["k8s://vault/vault-0", "k8s://vault/vault-0:0", "k8s://vault/vault-0:70000",
                                     "k8s://Vault/vault-0:8200", "k8s://vault/svc/:8200", "k8s://vault:8200",
                                     "k8s://vault/a/b:8200", "k8s://vault/vault-0:8200/v1"])
def test_malformed_addresses_are_refused_at_once(address):
    with pytest.raises(KubeForwardError, match="is not k8s://<namespace>/<pod>:<port>"):
        kube_forward.parse(address)
    with pytest.raises(KubeForwardError):
        kube_forward.local_url(address)
    # Not one of the errors the retry loops wait through.
    assert not issubclass(KubeForwardError, vault_ops.TRANSIENT)


@pytest.mark.parametrize("address", ["https://127.0.0.1:18200", "http://vault:8200", "https://vault-active.vault.svc:8200"])
def test_other_addresses_pass_through(address):
    assert kube_forward.parse(address) is None and not kube_forward.is_forwarded(address)
    assert kube_forward.local_url(address) == address
    assert vault_ops.client(address).url == address


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """kube_forward as a new process has it, with no kubeconfig anywhere unless a test gives one."""
    monkeypatch.setattr(kube_forward, "_FORWARDERS", {})
    monkeypatch.setattr(kube_forward, "_CONFIGS", {})
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    kube_forward.use_kubeconfig(None)
    yield tmp_path
    kube_forward.use_kubeconfig(None)


def test_no_kubeconfig_is_a_clear_error_not_a_retry(fresh):
    with pytest.raises(KubeForwardError, match="set KUBECONFIG"):
        kube_forward.local_url("k8s://vault/vault-0:8200")


def test_a_missing_kubeconfig_file_is_named(fresh, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(fresh / "nope.yaml"))
    with pytest.raises(KubeForwardError, match="nope.yaml does not exist"):
        kube_forward.local_url("k8s://vault/vault-0:8200")


def test_kubeconfig_from_env_file_home_or_content(fresh, monkeypatch):
    path = fresh / "kc.yaml"
    path.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(path))
    from_env = kube_forward.local_url("k8s://vault/vault-0:8200")
    assert from_env.startswith("https://127.0.0.1:")
    assert kube_forward.local_url("k8s://vault/vault-0:8200") == from_env  # one listener per target
    assert kube_forward.local_url("k8s://vault/vault-1:8200") != from_env
    monkeypatch.delenv("KUBECONFIG")
    (fresh / ".kube").mkdir()
    (fresh / ".kube" / "config").write_text(KUBECONFIG)
    assert kube_forward.local_url("k8s://vault/vault-0:8200").startswith("https://127.0.0.1:")
    kube_forward.use_kubeconfig(KUBECONFIG)  # the content itself
    assert kube_forward.local_url("k8s://vault/vault-0:8200").startswith("https://127.0.0.1:")


def test_a_broken_kubeconfig_is_named_without_its_content(fresh):
    kube_forward.use_kubeconfig("apiVersion: v1\nusers: [{name: u, user: {token: kube-token-never-shown}}]\n")
    with pytest.raises(KubeForwardError) as e:
        kube_forward.local_url("k8s://vault/vault-0:8200")
    assert "cannot load the kubeconfig" in str(e.value) and "kube-token-never-shown" not in str(e.value)


# --- the listeners, with loopback stand-ins for the pods --------------------------------------------

class Pods:
    """Stand-ins for pods: name -> (labels, ready, the loopback port of the server playing its port)."""

    def __init__(self):
        self.pods: dict[str, tuple[dict, bool, int]] = {}
        self.services: dict[str, tuple[dict, int, object]] = {}
        self.forwards: list[tuple[str, str, int]] = []

    def pod(self, name, port, labels=None, ready=True):
        self.pods[name] = (labels or {}, ready, port)

    # CoreV1Api, as kube_forward calls it
    def read_namespaced_service(self, name, namespace):
        if name not in self.services:
            raise ApiException(status=404, reason="Not Found")
        selector, port, target_port = self.services[name]
        return kclient.V1Service(spec=kclient.V1ServiceSpec(
            selector=selector, ports=[kclient.V1ServicePort(port=port, target_port=target_port)]))

    def list_namespaced_pod(self, namespace, label_selector):
        wanted = dict(kv.split("=") for kv in label_selector.split(","))
        return kclient.V1PodList(items=[
            kclient.V1Pod(
                metadata=kclient.V1ObjectMeta(name=name, labels=labels),
                spec=kclient.V1PodSpec(containers=[kclient.V1Container(
                    name="main", ports=[kclient.V1ContainerPort(name="https", container_port=8200)])]),
                status=kclient.V1PodStatus(phase="Running", conditions=[
                    kclient.V1PodCondition(type="Ready", status="True" if ready else "False")]))
            for name, (labels, ready, _) in self.pods.items() if wanted.items() <= labels.items()])

    def connect_get_namespaced_pod_portforward(self, name, namespace, ports):
        raise AssertionError("only through kubernetes.stream.portforward")

    def portforward(self, _method, name, namespace, ports):
        if name not in self.pods:
            # What the websocket handshake's failure carries: headers and a body, never to be repeated.
            raise ApiException(status=0, reason="Handshake status 404 Not Found -+-+- {'authorization': "
                                                "'Bearer kube-token-never-shown'} -+-+- b'pods not found'")
        self.forwards.append((namespace, name, int(ports)))
        return _Forward(socket.create_connection(("127.0.0.1", self.pods[name][2])))


class _Forward:
    def __init__(self, sock):
        self._sock = sock

    def socket(self, _port):
        return self._sock

    def error(self, _port):
        return None

    def close(self):
        self._sock.close()


@pytest.fixture
def pods(fresh, monkeypatch):
    fake = Pods()
    kube_forward.use_kubeconfig(KUBECONFIG)
    monkeypatch.setattr(kclient, "CoreV1Api", lambda _api: fake)
    monkeypatch.setattr("kubernetes.stream.portforward", fake.portforward)
    return fake


@contextlib.contextmanager
def greeter(name: str):
    """A plain TCP "pod": says its name, then echoes every byte back."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn):
        with conn:
            conn.sendall(f"{name}\n".encode())
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def _talk(address: str, payload: bytes) -> tuple[str, bytes]:
    return greet_and_echo(kube_forward.local_port(address), payload, timeout=10)


def test_bytes_go_both_ways_to_the_pod_named(pods):
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    with greeter("vault-0") as p0, greeter("vault-1") as p1:
        pods.pod("vault-0", p0)
        pods.pod("vault-1", p1)
        assert _talk("k8s://vault/vault-1:8200", payload) == ("vault-1", payload)
        assert _talk("k8s://vault/vault-0:8200", b"x") == ("vault-0", b"x")
    assert pods.forwards == [("vault", "vault-1", 8200), ("vault", "vault-0", 8200)]


def test_a_service_leads_to_a_ready_pod_it_selects_and_follows_it(pods):
    active = {"app": "vault", "vault-active": "true"}
    pods.services["vault-active"] = (active, 8200, "https")  # a named target port
    with greeter("vault-0") as p0, greeter("vault-1") as p1, greeter("vault-2") as p2:
        pods.pod("vault-0", p0, {"app": "vault", "vault-active": "false"})
        pods.pod("vault-1", p1, active)
        pods.pod("vault-2", p2, active, ready=False)  # labelled, not Ready: never chosen
        assert _talk("k8s://vault/svc/vault-active:8200", b"a")[0] == "vault-1"
        # A failover: the leader's label moves, the next connection follows it.
        pods.pod("vault-1", p1, {"app": "vault", "vault-active": "false"})
        pods.pod("vault-0", p0, active)
        assert _talk("k8s://vault/svc/vault-active:8200", b"b")[0] == "vault-0"
    assert pods.forwards[-1] == ("vault", "vault-0", 8200)


def test_a_missing_pod_is_a_transient_connection_error_with_a_reason_and_no_credential(pods):
    with pytest.raises(vault_ops.TRANSIENT) as e:
        vault_ops.seal_status("k8s://vault/vault-9:8200", timeout=5)
    assert isinstance(e.value, requests.ConnectionError)
    why = kube_forward.last_error("k8s://vault/vault-9:8200")
    assert why == "port-forward to pod vault/vault-9:8200: not found"
    assert why in str(e.value)  # the client's error says why, not just "connection reset"
    assert "kube-token-never-shown" not in str(e.value)


def test_a_service_without_ready_pods_or_missing_is_a_transient_error(pods, monkeypatch):
    monkeypatch.setattr(kube_forward, "SERVICE_WAIT", 0.5)
    pods.services["vault-active"] = ({"vault-active": "true"}, 8200, 8200)
    with pytest.raises(requests.ConnectionError):
        vault_ops.seal_status("k8s://vault/svc/vault-active:8200", timeout=5)
    assert "no Ready pod matches its selector vault-active=true" in kube_forward.last_error(
        "k8s://vault/svc/vault-active:8200")
    with pytest.raises(requests.ConnectionError):
        vault_ops.seal_status("k8s://vault/svc/nothing:8200", timeout=5)
    assert kube_forward.last_error("k8s://vault/svc/nothing:8200") == "service vault/nothing: not found"


@contextlib.contextmanager
def https_vault(tmp_path, bundle):
    """A TLS "pod" answering Vault's seal-status, with a certificate for 127.0.0.1 from its own CA."""
    (tmp_path / "cert.pem").write_text(bundle["cert_pem"])
    (tmp_path / "key.pem").write_text(bundle["key_pem"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = json.dumps({"initialized": False, "sealed": True, "t": 0}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_vault_ops_reaches_a_node_through_the_forward_with_tls_end_to_end(pods, tmp_path):
    # The Vault components' certificates name 127.0.0.1: the forwarded connection verifies against the CA.
    bundle = make_bundle("vault", ["localhost"], ["127.0.0.1"], days=1)
    with https_vault(tmp_path, bundle) as port:
        pods.pod("vault-0", port)
        assert vault_ops.seal_status("k8s://vault/vault-0:8200", bundle["ca_pem"]) == {
            "initialized": False, "sealed": True, "t": 0}
        other_ca = make_bundle("other", ["localhost"], ["127.0.0.1"], days=1)["ca_pem"]
        with pytest.raises(requests.exceptions.SSLError):
            vault_ops.seal_status("k8s://vault/vault-0:8200", other_ca)


# --- the real client's port-forward, against a stand-in API server ----------------------------------

class StandInApiServer:
    """Speaks the API server's port-forward websocket protocol (v4.channel.k8s.io) over HTTP, or HTTPS
    with `tls` (a make_bundle for 127.0.0.1): each pod's port says the pod's name, then echoes; the pod
    `missing` is not found."""

    def __init__(self, tls=None, tmp_path=None):
        self.requests: list[tuple[str, str]] = []  # (request line, authorization header)
        self._server = socket.create_server(("127.0.0.1", 0))
        self._tls = None
        if tls:
            (tmp_path / "api.crt").write_text(tls["cert_pem"])
            (tmp_path / "api.key").write_text(tls["key_pem"])
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(tmp_path / "api.crt", tmp_path / "api.key")
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle_tls if self._tls else self._handle, args=(conn,), daemon=True).start()

    def _handle_tls(self, conn):
        try:
            conn = self._tls.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        self._handle(conn)

    @staticmethod
    def _exact(conn, n):
        got = b""
        while len(got) < n:
            chunk = conn.recv(n - len(got))
            if not chunk:
                raise EOFError
            got += chunk
        return got

    def _frame_in(self, conn):
        head = self._exact(conn, 2)
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._exact(conn, 2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._exact(conn, 8))[0]
        mask = self._exact(conn, 4) if head[1] & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._exact(conn, n)))
        return head[0] & 0x0F, data

    @staticmethod
    def _frame_out(data):
        n = len(data)
        size = bytes([n]) if n < 126 else bytes([126]) + struct.pack(">H", n) if n < 65536 else \
            bytes([127]) + struct.pack(">Q", n)
        return bytes([0x82]) + size + data  # FIN, binary

    def _handle(self, conn):
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            lines = request.decode().split("\r\n")
            headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if ": " in line)}
            self.requests.append((lines[0], headers.get("authorization", "")))
            m = re.match(r"GET /api/v1/namespaces/([^/]+)/pods/([^/]+)/portforward\?ports=(\d+) ", lines[0])
            if not m or m.group(2) == "missing":
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            accept = base64.b64encode(hashlib.sha1(  # noqa: S324 (the websocket handshake's own digest)
                (headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            port = struct.pack("<H", int(m.group(3)))
            # The handshake's answer; each channel (0: data, 1: errors) names its port; the pod speaks first
            # on channel 0: all in one write, so over TLS in one record, as a busy API server may send them.
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n").encode()
                         + self._frame_out(b"\0" + port) + self._frame_out(b"\1" + port)
                         + self._frame_out(b"\0" + f"{m.group(2)}\n".encode()))
            try:
                while True:
                    op, data = self._frame_in(conn)
                    if op == 8:  # close
                        return
                    if op == 2 and data[:1] == b"\0":
                        conn.sendall(self._frame_out(b"\0" + data[1:]))
            except (EOFError, OSError):
                return


def test_the_kubernetes_clients_port_forward_carries_the_bytes(fresh):
    api = StandInApiServer()
    kube_forward.use_kubeconfig(KUBECONFIG.replace("https://127.0.0.1:1", api.url))
    payload = bytes(range(256)) * 8192  # 2 MiB, more than one frame and one read
    assert _talk("k8s://vault/vault-2:8200", payload) == ("vault-2", payload)
    line, authorization = api.requests[-1]
    assert line.startswith("GET /api/v1/namespaces/vault/pods/vault-2/portforward?ports=8200 ")
    assert authorization == "Bearer kube-token-never-shown"  # the kubeconfig's credentials
    with pytest.raises(requests.ConnectionError):
        vault_ops.seal_status("k8s://vault/missing:8200", timeout=5)
    assert kube_forward.last_error("k8s://vault/missing:8200") == "port-forward to pod vault/missing:8200: not found"


def test_a_rewritten_kubeconfig_file_is_read_again_behind_the_same_port(fresh, monkeypatch):
    api = StandInApiServer()
    path = fresh / "kc.json"
    path.write_text(KUBECONFIG.replace("https://127.0.0.1:1", api.url))
    monkeypatch.setenv("KUBECONFIG", str(path))
    port = kube_forward.local_port("k8s://vault/vault-0:8200")
    assert _talk("k8s://vault/vault-0:8200", b"one") == ("vault-0", b"one")
    path.write_text(KUBECONFIG.replace("https://127.0.0.1:1", api.url).replace("kube-token-never-shown", "new-token"))
    os.utime(path, ns=(1, 1))
    assert kube_forward.local_port("k8s://vault/vault-0:8200") == port
    assert _talk("k8s://vault/vault-0:8200", b"two") == ("vault-0", b"two")
    assert [a for _, a in api.requests] == ["Bearer kube-token-never-shown", "Bearer new-token"]


def test_a_pod_that_speaks_first_is_heard_at_once_over_tls(fresh):
    # The client's proxy used to wait in select() while the greeting sat decrypted in the TLS object.
    bundle = make_bundle("api", ["localhost"], ["127.0.0.1"], days=1)
    api = StandInApiServer(tls=bundle, tmp_path=fresh)
    config = json.loads(KUBECONFIG.replace("https://127.0.0.1:1", api.url))
    config["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(bundle["ca_pem"].encode()).decode()
    kube_forward.use_kubeconfig(json.dumps(config))
    port = kube_forward.local_port("k8s://vault/vault-0:8200")
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert s.makefile("rb").readline() == b"vault-0\n"
    assert _talk("k8s://vault/vault-0:8200", b"x" * 100_000) == ("vault-0", b"x" * 100_000)
