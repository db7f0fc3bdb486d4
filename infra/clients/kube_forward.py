"""Reach a pod's (or a Service's) port through the Kubernetes API server, as `kubectl port-forward` does,
with nothing but the kubeconfig: no route to the pod network, no kubectl, no port-forward to start by hand.

Addresses:
  k8s://<namespace>/<pod>:<port>            that pod
  k8s://<namespace>/svc/<service>:<port>    a Ready pod the Service selects, chosen anew for each connection
                                            (after a failover, `vault-active` leads to the new leader)

`local_url(address)` gives `https://127.0.0.1:<local port>` for such an address (any other address comes
back unchanged): a listener on loopback, one per target and process, made on first use, whose every
accepted connection becomes one port-forward through the API server (the official `kubernetes` client),
bytes piped both ways. TLS stays end to end: the client talks TLS to the pod through the tunnel, so the
server's certificate must name 127.0.0.1 (the Vault components' certificates do). Like `kubectl
port-forward`, the listener lets any local process reach the pod with this process's cluster credentials;
Vault still asks each of them for a token.

A connection that cannot be forwarded (no such pod, no Ready pod behind the Service, the API server
refusing) is accepted and closed at once: the client sees a connection error, which retry loops treat as
transient; `last_error(address)` says why, without any credential. A bad address or no kubeconfig at all
raises `KubeForwardError` at once instead: retrying would not help.

The cluster: the kubeconfig given to `use_kubeconfig` (a path or the content), else the file(s) in
`KUBECONFIG`, else ~/.kube/config, else the in-cluster service account. Dynamic providers run in a
process of their own that inherits the Pulumi CLI's environment, so tools/stack.sh and tools/ci_deploy.py
export `KUBECONFIG` from the stack's `kubeconfig` setting.
"""
import contextlib
import hashlib
import os
import re
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

SCHEME = "k8s://"
# How long a connection to a Service waits for a Ready pod behind it (a pod that has just been unsealed
# turns Ready at its next readiness probe); shorter than the clients' own timeouts.
SERVICE_WAIT = 20.0

_NAME = r"[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?"
_ADDRESS = re.compile(rf"^k8s://(?P<ns>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)/(?:(?P<svc>svc)/)?(?P<name>{_NAME}):(?P<port>\d{{1,5}})$")


class KubeForwardError(Exception):
    """A `k8s://` address that is malformed, or no cluster to reach it through: not worth a retry."""


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str
    port: int
    service: bool = False  # True: `name` is a Service, and each connection goes to a Ready pod behind it

    @property
    def address(self) -> str:
        return f"{SCHEME}{self.namespace}/{'svc/' if self.service else ''}{self.name}:{self.port}"


def pod_address(namespace: str, pod: str, port: int) -> str:
    return Target(namespace, pod, port).address


def service_address(namespace: str, service: str, port: int) -> str:
    return Target(namespace, service, port, service=True).address


def is_forwarded(address: str) -> bool:
    return isinstance(address, str) and address.startswith(SCHEME)


def parse(address: str) -> Optional[Target]:
    """The target of a `k8s://` address; None for any other address; KubeForwardError if malformed."""
    if not is_forwarded(address):
        return None
    m = _ADDRESS.match(address)
    if not m or not 0 < int(m["port"]) < 65536:
        raise KubeForwardError(f"{address!r} is not k8s://<namespace>/<pod>:<port> or "
                               "k8s://<namespace>/svc/<service>:<port>")
    return Target(m["ns"], m["name"], int(m["port"]), service=bool(m["svc"]))


def local_url(address: str) -> str:
    """`https://127.0.0.1:<port>` that reaches a `k8s://` address; any other address unchanged."""
    if not is_forwarded(address):
        return address
    return f"https://127.0.0.1:{local_port(address)}"


def local_port(address: str) -> int:
    """The loopback port whose connections go to a `k8s://` address (its listener made on first use)."""
    target = parse(address)
    if target is None:
        raise KubeForwardError(f"{address!r} is not a k8s:// address")
    return _forwarder(target).port


def last_error(address: str) -> Optional[str]:
    """Why the last connection to `address` could not be forwarded, or None (never a credential)."""
    target = parse(address)
    with _LOCK:
        found = [f for (_, t), f in _FORWARDERS.items() if t == target]
    return found[-1].last_error if found else None


def use_kubeconfig(kubeconfig: Optional[str]) -> None:
    """Reach the cluster of this kubeconfig (a file's path, or the content itself) in this process;
    None: back to KUBECONFIG / ~/.kube/config / in-cluster."""
    global _EXPLICIT
    with _LOCK:
        _EXPLICIT = kubeconfig or None


def api_client() -> Any:
    """A `kubernetes` ApiClient for the cluster that `k8s://` addresses reach now (see the module's doc)."""
    from kubernetes import client

    return client.ApiClient(_configuration()[1])


# --- the cluster ------------------------------------------------------------------------------------

_LOCK = threading.Lock()
_EXPLICIT: Optional[str] = None
_CONFIGS: dict[tuple, Any] = {}
_FORWARDERS: dict[tuple, "_Forwarder"] = {}


def _files_key(paths: str) -> tuple:
    """A kubeconfig path list (`KUBECONFIG` may name several) with each file's mtime: a rewritten file
    (a cluster made again) is read again."""
    found = []
    for p in filter(None, paths.split(os.pathsep)):
        p = os.path.expanduser(p)
        with contextlib.suppress(OSError):
            found.append((p, os.stat(p).st_mtime_ns))
    if not found:
        raise KubeForwardError(f"kubeconfig {paths} does not exist")
    return ("files", os.pathsep.join(p for p, _ in found), tuple(found))


def _source() -> tuple:
    """Which kubeconfig applies now, as a cache key."""
    with _LOCK:
        explicit = _EXPLICIT
    if explicit:
        if "\n" not in explicit and os.path.isfile(os.path.expanduser(explicit)):
            return _files_key(explicit)
        return ("content", hashlib.sha256(explicit.encode()).hexdigest(), explicit)
    if os.environ.get("KUBECONFIG"):
        return _files_key(os.environ["KUBECONFIG"])
    default = os.path.expanduser("~/.kube/config")
    if os.path.isfile(default):
        return _files_key(default)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return ("in-cluster",)
    raise KubeForwardError("no kubeconfig to reach the cluster through: set KUBECONFIG (or the stack's "
                           "kubeconfig setting), or write ~/.kube/config")


def _load(source: tuple) -> Any:
    import yaml
    from kubernetes import client, config

    cfg = client.Configuration()
    try:
        if source[0] == "files":
            config.load_kube_config(config_file=source[1], client_configuration=cfg, persist_config=False)
        elif source[0] == "content":
            content = yaml.safe_load(source[2])
            if not isinstance(content, dict):
                raise KubeForwardError("the kubeconfig given is neither a file nor a kubeconfig's content")
            config.load_kube_config_from_dict(content, client_configuration=cfg, persist_config=False)
        else:
            config.load_incluster_config(client_configuration=cfg)
    except KubeForwardError:
        raise
    except Exception as e:  # noqa: BLE001 (any loader failure: the type only, a kubeconfig holds credentials)
        where = source[1] if source[0] == "files" else source[0]
        raise KubeForwardError(f"cannot load the kubeconfig ({where}): {type(e).__name__}") from None
    return cfg


def _configuration() -> tuple[tuple, Any]:
    source = _source()
    key = source[:2]
    with _LOCK:
        cfg = _CONFIGS.get(source)
    if cfg is None:
        cfg = _load(source)
        with _LOCK:
            cfg = _CONFIGS.setdefault(source, cfg)
    return key, cfg


def _forwarder(target: Target) -> "_Forwarder":
    key, cfg = _configuration()
    with _LOCK:
        fwd = _FORWARDERS.get((key, target))
        if fwd is None:
            fwd = _FORWARDERS[(key, target)] = _Forwarder(target, cfg)
        else:
            fwd.configuration = cfg  # the same port, with the file's current credentials
    return fwd


# --- one listener per target ------------------------------------------------------------------------

class _TlsAwareSelect:
    """The `select` module as the client's port-forward sees it, with one fix. Its proxy thread waits in
    select() on the API server's TLS socket, but bytes already decrypted into the TLS object (the frames
    that came in the same record as the handshake's answer, say a server's greeting) do not wake select:
    they sat there until the server sent more, and a server that speaks first stalled (kubernetes 33.1.0,
    about one connection in four here). A socket with such bytes is reported ready at once."""

    def __getattr__(self, name: str) -> Any:
        return getattr(select, name)

    @staticmethod
    def select(rlist: list, wlist: list, xlist: list, *timeout: Any) -> tuple[list, list, list]:
        def buffered(s: Any) -> bool:
            sock = getattr(s, "sock", s)  # a websocket, or a socket
            return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

        ready = [s for s in rlist if buffered(s)]
        if not ready:
            return select.select(rlist, wlist, xlist, *timeout)
        r, w, x = select.select(rlist, wlist, xlist, 0)
        return list(dict.fromkeys([*ready, *r])), w, x


_PATCH_LOCK = threading.Lock()


def _fix_client_select() -> None:
    from kubernetes.stream import ws_client

    with _PATCH_LOCK:
        if not isinstance(ws_client.select, _TlsAwareSelect):
            ws_client.select = _TlsAwareSelect()


class _CannotForward(Exception):
    """Why a connection cannot be forwarded, in words fit for an error message."""


def _describe(e: BaseException, what: str) -> str:
    """An API failure in words that carry no credential: the HTTP status, never a body or a header."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(e, _CannotForward):
        return str(e)
    if isinstance(e, ApiException):
        status = e.status
        if not status:  # the port-forward's websocket handshake: its text is in `reason`
            m = re.search(r"Handshake status (\d{3})", str(e.reason or ""))
            if m:
                status = int(m.group(1))
            else:
                errno = re.search(r"\[Errno -?\d+\] [^\]'\"]{0,80}", str(e.reason or ""))
                return f"{what}: the API server did not answer ({errno.group(0) if errno else 'no connection'})"
        said = {401: "unauthorized (the kubeconfig's credentials)", 404: "not found",
                403: "forbidden (the kubeconfig's user may not do that)"}.get(status, f"HTTP {status}")
        return f"{what}: {said}"
    return f"{what}: {type(e).__name__}"


def _ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp or not pod.status or pod.status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _container_port(pod: Any, name: str) -> Optional[int]:
    for c in pod.spec.containers:
        for p in c.ports or []:
            if p.name == name:
                return int(p.container_port)
    return None


def _pipe(a: socket.socket, b: Any) -> None:
    """Copies bytes both ways until either side ends, then ends both (a port-forward cannot half-close)."""
    def copy(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    other = threading.Thread(target=copy, args=(b, a), daemon=True, name="kube-forward pipe")
    other.start()
    copy(a, b)
    other.join()


class _Forwarder:
    def __init__(self, target: Target, configuration: Any):
        self.target, self.configuration = target, configuration
        self.last_error: Optional[str] = None
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name=f"kube-forward {target.address}").start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name=f"kube-forward {self.target.address} connection").start()

    def _pod(self, core: Any) -> tuple[str, int]:
        """The pod and its port that this connection goes to."""
        t = self.target
        if not t.service:
            return t.name, t.port
        what = f"service {t.namespace}/{t.name}"
        try:
            spec = core.read_namespaced_service(t.name, t.namespace).spec
        except Exception as e:  # noqa: BLE001 (described without credentials, then the connection closes)
            raise _CannotForward(_describe(e, what)) from None
        if not spec.selector:
            raise _CannotForward(f"{what} selects no pods (it has no selector)")
        port = next((p for p in spec.ports or [] if p.port == t.port), None)
        if port is None:
            raise _CannotForward(f"{what} has no port {t.port}")
        selector = ",".join(f"{k}={v}" for k, v in sorted(spec.selector.items()))
        deadline = time.monotonic() + SERVICE_WAIT
        while True:
            try:
                pods = core.list_namespaced_pod(t.namespace, label_selector=selector).items
            except Exception as e:  # noqa: BLE001
                raise _CannotForward(_describe(e, f"pods of {what}")) from None
            ready = sorted((p for p in pods if _ready(p)), key=lambda p: p.metadata.name)
            if ready:
                pod, target_port = ready[0], port.target_port
                if target_port is None:
                    return pod.metadata.name, t.port
                if isinstance(target_port, str) and not target_port.isdigit():
                    number = _container_port(pod, target_port)
                    if number is None:
                        raise _CannotForward(f"{what}: pod {pod.metadata.name} has no port named {target_port}")
                    return pod.metadata.name, number
                return pod.metadata.name, int(target_port)
            if time.monotonic() > deadline:
                raise _CannotForward(f"{what}: no Ready pod matches its selector {selector}")
            time.sleep(0.5)

    def _serve(self, conn: socket.socket) -> None:
        from kubernetes import client
        from kubernetes.stream import portforward

        _fix_client_select()
        # An API client per connection: `portforward` swaps the client's request method while it connects.
        api = client.ApiClient(self.configuration)
        forward = None
        try:
            core = client.CoreV1Api(api)
            try:
                pod, port = self._pod(core)
            except _CannotForward as e:
                self.last_error = str(e)
                return
            what = f"port-forward to pod {self.target.namespace}/{pod}:{port}"
            try:
                forward = portforward(core.connect_get_namespaced_pod_portforward, pod, self.target.namespace,
                                      ports=str(port))
                remote = forward.socket(port)
            except Exception as e:  # noqa: BLE001
                self.last_error = _describe(e, what)
                return
            _pipe(conn, remote)
            refused = forward.error(port)
            # The kubelet's words (nothing listening on the port, say): no credential in them.
            self.last_error = f"{what}: {refused.strip()[:200]}" if refused else None
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            if forward is not None:
                with contextlib.suppress(OSError):
                    forward.close()
            api.rest_client.pool_manager.clear()  # the Service's reads' connections to the API server
            api.close()
