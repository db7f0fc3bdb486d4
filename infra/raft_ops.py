"""Waits on a Raft cluster's state over the API, shared by the bootstrap, the DR drills and the tests."""
import time
from typing import Any, Callable

import hvac
import requests

# What a node answers while it starts, seals, elects or joins: worth another try, not a failure.
TRANSIENT = (requests.RequestException, hvac.exceptions.VaultError, ValueError, KeyError)


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


def healthy_voters(address: str, token: str, verify: Any) -> int:
    """Healthy voters (the leader included) that autopilot reports; 0 when it cannot tell."""
    r = requests.get(f"{address}/v1/sys/storage/raft/autopilot/state", headers={"X-Vault-Token": token},
                     verify=verify, timeout=5)
    servers = (r.json().get("data") or {}).get("servers", {}) if r.ok else {}
    return sum(1 for s in servers.values() if s.get("status") in ("leader", "voter") and s.get("healthy"))


def active_index(nodes: list[str], verify: Any, skip: tuple[int, ...] = ()) -> int:
    """The index of the node that answers as active (health 200), or -1."""
    for i, n in enumerate(nodes):
        if i in skip:
            continue
        try:
            if requests.get(f"{n}/v1/sys/health", verify=verify, timeout=2).status_code == 200:
                return i
        except requests.RequestException:
            pass
    return -1


def unseal_until_serving(nodes: list[str], keys: list[str], verify: Any, timeout: float = 120) -> str:
    """Unseals every sealed node with `keys` until one node is active, every node unsealed, on three checks
    in a row; returns the active node. After a forced restore the nodes seal again some seconds later,
    not at once, and open only with the source cluster's keys."""
    deadline, settled, active = time.monotonic() + timeout, 0, None
    while time.monotonic() < deadline:
        unsealed = 0
        for n in nodes:
            try:
                s = requests.get(f"{n}/v1/sys/seal-status", verify=verify, timeout=2).json()
                if s.get("sealed") and s.get("t", 0) > 0:
                    for k in keys[:s["t"]]:
                        requests.put(f"{n}/v1/sys/unseal", json={"key": k}, verify=verify, timeout=5)
                elif s.get("sealed") is False:
                    unsealed += 1
            except (requests.RequestException, ValueError):
                pass
        i = active_index(nodes, verify)
        now_active = nodes[i] if i >= 0 else None
        # A node that never answers again (a broken follower) must not hold the cluster hostage: a
        # majority unsealed with a steady leader is serving.
        quorum = unsealed > len(nodes) // 2
        settled = settled + 1 if now_active and now_active == active and quorum else 0
        active = now_active
        if settled == 3:
            return active
        time.sleep(1)
    raise RuntimeError("the cluster did not come up serving")
