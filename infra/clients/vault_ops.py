"""Operations on a Vault/OpenBao node or Raft cluster over hvac's `sys` API, shared by the bootstrap
resource, the DR drills and the test bed: one way to reach a node (its CA, no environment override, a
timeout), initialise, unseal, read health, seal and Raft state, take and restore snapshots, and wait for
a cluster to settle. Keys and tokens go into requests only, never into an error or a log line."""
import atexit
import base64
import contextlib
import hashlib
import os
import tempfile
import threading
import time
from typing import Any, Callable, Iterator, Optional

import hvac
import requests

from infra.clients import kube_forward

# What a node answers while it starts, seals, elects or joins: worth another try, not a failure.
TRANSIENT = (requests.RequestException, hvac.exceptions.VaultError, ValueError, KeyError)


_CA_FILES: dict[str, str] = {}
_CA_LOCK = threading.Lock()


def ca_verify(ca: Any = None) -> Any:
    """What requests' `verify` takes for a server signed by `ca`: a CA PEM, a CA file's path, or empty
    (or True) for the system's CAs."""
    if not ca or ca is True:
        return True
    if "-----BEGIN" not in ca:
        return ca
    # requests wants a file. A fresh private one per CA and process (mkstemp: 0600, a name nobody can
    # guess or plant beforehand), not a fixed name in a shared temp dir that another user could pre-create.
    key = hashlib.sha256(ca.encode()).hexdigest()
    with _CA_LOCK:
        path = _CA_FILES.get(key)
        if path is None or not os.path.exists(path):
            fd, path = tempfile.mkstemp(prefix="vault-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as f:
                f.write(ca)
            atexit.register(_remove, path)
            _CA_FILES[key] = path
    return path


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def client(address: str, token: str = "", ca: Any = None, timeout: float = 10) -> hvac.Client:
    """An hvac client of one node. `token` is never taken from the environment (VAULT_TOKEN, ~/.vault-token).
    A `k8s://` address (a pod or Service reached through the Kubernetes API) goes through a local
    port-forward (infra/clients/kube_forward.py); every request of the project to a node is made here."""
    c = hvac.Client(url=kube_forward.local_url(address), token=token, verify=ca_verify(ca), timeout=timeout)
    # REQUESTS_CA_BUNDLE in the environment would silently override `verify`.
    c.adapter.session.trust_env = False
    if kube_forward.is_forwarded(address):
        c.adapter.request = _saying_why(c.adapter.request, address)
    return c


def _saying_why(request: Callable[..., Any], address: str) -> Callable[..., Any]:
    """A forwarded connection that fails is only closed: name the reason (no pod, no Ready pod...)."""
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return request(*args, **kwargs)
        except requests.ConnectionError as e:
            why = kube_forward.last_error(address)
            if not why:
                raise
            raise requests.ConnectionError(f"{address}: {why} ({type(e).__name__})") from None
    return call


def wait_until(check: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.3,
               error: type[Exception] = TimeoutError) -> Any:
    """`check()`'s first truthy result, retried through transient errors; `error` after `timeout` s."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except TRANSIENT as e:
            last = e
        time.sleep(interval)
    raise error(f"timed out after {timeout:.0f} s waiting for {what}"
                + (f" (last error: {type(last).__name__})" if last else ""))


def seal_status(address: str, ca: Any = None, timeout: float = 10) -> dict:
    return client(address, ca=ca, timeout=timeout).sys.read_seal_status()


def sealed_nodes(nodes: list[str], ca: Any = None) -> list[str]:
    """Nodes that answer and are sealed (a node that does not answer is not ours to fix)."""
    out = []
    for address in nodes:
        try:
            if seal_status(address, ca).get("sealed"):
                out.append(address)
        except (requests.RequestException, hvac.exceptions.VaultError):
            pass
    return out


def auto_sealed(status: dict) -> bool:
    """Whether a node's seal status (sys/seal-status) is an auto seal (static, transit, a KMS): it unseals
    itself, and its key shares are recovery shares, which never unseal."""
    return status.get("type", "shamir") != "shamir"


def seal_types(nodes: list[str], ca: Any = None) -> set[str]:
    """The seal types the answering, initialised nodes report (one, unless a seal migration is under way)."""
    out = set()
    for address in nodes:
        try:
            status = seal_status(address, ca)
        except (requests.RequestException, hvac.exceptions.VaultError):
            continue
        if status.get("initialized"):
            out.add(status.get("type", "shamir"))
    return out


def initialize(address: str, shares: int, threshold: int, ca: Any = None,
               pgp_keys: Optional[list[str]] = None) -> tuple[list[str], str]:
    """Initialises the node's cluster; returns (key shares, root token). The shares are unseal keys with
    Shamir, recovery shares with an auto seal (the node's seal type decides); encrypted to `pgp_keys` (base64
    OpenPGP public keys, one per share) they come back as base64 ciphertexts only their holders can open."""
    c = client(address, ca=ca, timeout=30)
    if auto_sealed(c.sys.read_seal_status()):
        init = c.sys.initialize(recovery_shares=shares, recovery_threshold=threshold,
                                recovery_pgp_keys=pgp_keys or None)
        return init["recovery_keys_base64" if pgp_keys else "recovery_keys"], init["root_token"]
    init = c.sys.initialize(secret_shares=shares, secret_threshold=threshold, pgp_keys=pgp_keys or None)
    return init["keys_base64" if pgp_keys else "keys"], init["root_token"]


def unseal(address: str, keys: list[str], ca: Any = None, *, timeout: float = 120, interval: float = 0.3,
           error: type[Exception] = TimeoutError) -> None:
    """Unseals one node with as many of `keys` as it needs, and waits until it is unsealed. An auto-sealed
    node unseals itself (once it has joined): it is only waited for."""
    c = client(address, ca=ca, timeout=30)
    if auto_sealed(wait_until(c.sys.read_seal_status, timeout, f"{address} to answer", interval=interval, error=error)):
        wait_until(lambda: not c.sys.read_seal_status()["sealed"], timeout, f"{address} to unseal itself (auto seal)",
                   interval=interval, error=error)
        return
    # A joiner reports t=0 until it has the leader's challenge: unsealing before that fails.
    status = wait_until(lambda: (s := c.sys.read_seal_status()).get("t", 0) > 0 and s, timeout,
                        f"{address} to join the cluster", interval=interval, error=error)
    if status["sealed"] and c.sys.submit_unseal_keys(keys[:status["t"]])["sealed"]:
        # A joiner stays sealed until it has joined Raft and caught up: give it time.
        wait_until(lambda: not c.sys.read_seal_status()["sealed"], timeout, f"{address} to unseal",
                   interval=interval, error=error)


def is_active(address: str, ca: Any = None, timeout: float = 2) -> bool:
    """Whether the node answers as the active one (health 200: unsealed, not a standby)."""
    try:
        return client(address, ca=ca, timeout=timeout).sys.read_health_status(method="HEAD").status_code == 200
    except requests.RequestException:
        return False


def active_index(nodes: list[str], ca: Any = None) -> int:
    """The index of the node that answers as active, or -1."""
    return next((i for i, n in enumerate(nodes) if is_active(n, ca)), -1)


def active_node(nodes: list[str], ca: Any = None) -> Optional[str]:
    i = active_index(nodes, ca)
    return nodes[i] if i >= 0 else None


def autopilot_servers(address: str, token: str, ca: Any = None) -> dict:
    """Autopilot's view of each Raft server (id -> status, healthy, ...); {} when it cannot tell."""
    try:
        # hvac has no method for autopilot's state.
        state = client(address, token, ca, timeout=5).adapter.get("/v1/sys/storage/raft/autopilot/state")
    except hvac.exceptions.VaultError:
        return {}
    return (state.get("data") or {}).get("servers", {}) if isinstance(state, dict) else {}


def healthy_voters(address: str, token: str, ca: Any = None) -> int:
    """Healthy voters (the leader included) that autopilot reports; 0 when it cannot tell."""
    return sum(1 for s in autopilot_servers(address, token, ca).values()
               if s.get("status") in ("leader", "voter") and s.get("healthy"))


def unseal_until_serving(nodes: list[str], keys: list[str], ca: Any = None, timeout: float = 120) -> str:
    """Unseals every sealed node with `keys` until one node is active, every node unsealed, on three checks
    in a row; returns the active node. After a forced restore the nodes seal again some seconds later,
    not at once, and open only with the source cluster's keys."""
    deadline, settled, active = time.monotonic() + timeout, 0, None
    while time.monotonic() < deadline:
        unsealed = 0
        for n in nodes:
            try:
                c = client(n, ca=ca, timeout=5)
                s = c.sys.read_seal_status()
                if s.get("sealed") and s.get("t", 0) > 0 and not auto_sealed(s):  # auto: it unseals itself
                    c.sys.submit_unseal_keys(keys[:s["t"]])
                elif s.get("sealed") is False:
                    unsealed += 1
            except TRANSIENT:
                pass
        now_active = active_node(nodes, ca)
        # A node that never answers again (a broken follower) must not hold the cluster hostage: a
        # majority unsealed with a steady leader is serving.
        quorum = unsealed > len(nodes) // 2
        settled = settled + 1 if now_active and now_active == active and quorum else 0
        active = now_active
        if settled == 3 and active:
            return active
        time.sleep(1)
    raise RuntimeError("the cluster did not come up serving")


def take_snapshot(c: hvac.Client, path: str) -> None:
    """Saves a Raft snapshot to `path`. Ask the active node: a standby answers with a redirect to its
    in-cluster address."""
    with c.sys.take_raft_snapshot() as r, open(path, "wb") as f:
        for chunk in r.iter_content(1 << 20):
            f.write(chunk)


def force_restore_snapshot(c: hvac.Client, path: str) -> None:
    """Restores a snapshot of any cluster (another cluster's keys: the nodes seal, then open with those)."""
    with open(path, "rb") as f:
        c.sys.force_restore_raft_snapshot(f)


@contextlib.contextmanager
def break_glass_root(address: str, keys: list[str], token: str, ca: Any = None) -> Iterator[str]:
    """A root token made from a quorum of unseal keys (one-time-pad encoded), for an operation that needs
    more than any role grants (a drill reading every value and Raft's autopilot state); revoked when the
    block ends. The bootstrap revokes the first root token, so this is the way back to root, and the audit
    log records it. OpenBao (2.6 and later) asks for a token allowed `sys/generate-root-token/*` as well as
    the keys (config-admin is); HashiCorp Vault takes the keys alone at `sys/generate-root`."""
    c = client(address, token, ca, timeout=30)
    prefix = "/v1/sys/generate-root-token"
    try:
        c.adapter.delete(f"{prefix}/attempt")  # an attempt someone left half-done would refuse a new one
    except (hvac.exceptions.InvalidPath, hvac.exceptions.UnsupportedOperation):  # no such endpoint here
        prefix = "/v1/sys/generate-root"
    except hvac.exceptions.VaultError:
        pass
    # The authenticated endpoint answers in `data`, the unauthenticated one at the top level.
    attempt = _body(c.adapter.put(f"{prefix}/attempt", json={}))
    result: dict = {}
    for key in keys[:attempt["required"]]:
        result = _body(c.adapter.put(f"{prefix}/update", json={"key": key, "nonce": attempt["nonce"]}))
    if not result.get("complete"):
        c.adapter.delete(f"{prefix}/attempt")
        raise RuntimeError("generating a root token did not complete: not enough unseal keys")
    encoded = base64.b64decode(result["encoded_token"] + "=" * (-len(result["encoded_token"]) % 4))
    root = bytes(a ^ b for a, b in zip(encoded, attempt["otp"].encode(), strict=True)).decode()
    try:
        yield root
    finally:
        with contextlib.suppress(*TRANSIENT):
            client(address, root, ca, timeout=30).auth.token.revoke_self()


def _body(response: dict) -> dict:
    return response.get("data") or response
