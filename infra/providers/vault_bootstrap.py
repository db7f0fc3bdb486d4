"""Initialise and unseal a Vault/OpenBao cluster once, and hand configuration a narrow admin token.

The unseal keys, the root token (while it exists) and the admin token are secret outputs: encrypted in
the stack state, never shown. Every `preview`/`up` checks the live cluster: a sealed node (say, after a
restart) shows as a change, and the update unseals it.
"""
from typing import Any, Optional

import pulumi
import requests
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from infra.raft_ops import healthy_voters, wait_until

from .base import ManagedProvider, plain
from .vault import tls_verify

ADMIN_POLICY = "config-admin"


class BootstrapError(Exception):
    pass


def _session(props: dict[str, Any]) -> tuple[requests.Session, Any]:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
    return session, tls_verify(props.get("ca_cert_pem"))


def _get(props: dict[str, Any], address: str, path: str, token: str = "") -> requests.Response:
    session, verify = _session(props)
    return session.get(f"{address}/v1/{path}", headers={"X-Vault-Token": token} if token else {},
                       verify=verify, timeout=10)


def _put(props: dict[str, Any], address: str, path: str, body: dict, token: str = "") -> dict:
    session, verify = _session(props)
    r = session.put(f"{address}/v1/{path}", json=body, headers={"X-Vault-Token": token} if token else {},
                    verify=verify, timeout=30)
    if r.status_code >= 400:
        # Vault's error text names the problem; it never echoes keys or tokens.
        raise BootstrapError(f"{path} on {address}: HTTP {r.status_code}: {r.text.strip()[:300]}")
    return r.json() if r.content else {}


def _wait(check, timeout: float, what: str) -> Any:
    return wait_until(check, timeout, what, interval=0.5, error=BootstrapError)


def _seal_status(props: dict[str, Any], address: str) -> dict:
    return _get(props, address, "sys/seal-status").json()


def sealed_nodes(props: dict[str, Any]) -> list[str]:
    """Nodes that answer and are sealed (a node that does not answer is not ours to fix)."""
    out = []
    for address in props["node_addresses"]:
        try:
            if _seal_status(props, address).get("sealed"):
                out.append(address)
        except requests.RequestException:
            pass
    return out


def _unseal(props: dict[str, Any], address: str, keys: list[str], threshold: int) -> None:
    # A joiner reports t=0 until it has the leader's challenge: unsealing before that fails.
    _wait(lambda: _seal_status(props, address).get("t", 0) > 0, 120, f"{address} to join the cluster")
    for key in keys[:threshold]:
        if not _put(props, address, "sys/unseal", {"key": key}).get("sealed", True):
            return
    # A joiner stays sealed until it has joined Raft and caught up: give it time.
    _wait(lambda: not _seal_status(props, address).get("sealed"), 120, f"{address} to unseal")


class _BootstrapProvider(ManagedProvider):
    managed = ("node_addresses", "ca_cert_pem", "admin_policy", "revoke_root", "admin_token_period")

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        for key in ("key_shares", "key_threshold"):
            if olds.get(key) != news.get(key):
                raise BootstrapError(f"{key} cannot change after initialisation (rekey the cluster by hand)")
        result = super().diff(id_, olds, news)
        if not result.changes and sealed_nodes(plain(olds)):
            result.changes = True  # the update unseals them
        return result

    def create(self, props: dict[str, Any]) -> CreateResult:
        p = plain(props)
        first = p["node_addresses"][0]
        status = _wait(lambda: _seal_status(p, first), 120, f"{first} to answer")
        if status.get("initialized"):
            raise BootstrapError(
                f"{first} is already initialised: this stack did not create it and holds none of its keys")
        init = _put(p, first, "sys/init", {"secret_shares": p["key_shares"], "secret_threshold": p["key_threshold"]})
        keys, root = init["keys"], init["root_token"]
        for address in p["node_addresses"]:
            _unseal(p, address, keys, p["key_threshold"])
        _wait(lambda: _get(p, first, "sys/health").status_code == 200, 120, "an active node")
        _wait(lambda: healthy_voters(first, root, tls_verify(p.get("ca_cert_pem"))) == len(p["node_addresses"]),
              180, "every node to be a voter")

        _put(p, first, f"sys/policies/acl/{ADMIN_POLICY}", {"policy": p["admin_policy"]}, root)
        admin = _put(p, first, "auth/token/create-orphan", {
            "policies": [ADMIN_POLICY], "period": p["admin_token_period"], "display_name": ADMIN_POLICY,
            "renewable": True,
        }, root)["auth"]["client_token"]
        if p["revoke_root"]:
            _put(p, first, "auth/token/revoke-self", {}, root)
            root = ""
        return CreateResult("bootstrap", {**props, "unseal_keys": keys, "root_token": root, "admin_token": admin})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        p, o = plain(news), plain(olds)
        for address in sealed_nodes(p):
            _unseal(p, address, o["unseal_keys"], o["key_threshold"])
        active = _wait(lambda: self._active(p), 120, "an active node")
        admin, root = o["admin_token"], o.get("root_token") or ""
        if o["admin_policy"] != p["admin_policy"]:
            if not root:
                raise BootstrapError(f"changing the {ADMIN_POLICY} policy needs root, which was revoked: "
                                     "generate a root token with the unseal keys (vault operator generate-root)")
            _put(p, active, f"sys/policies/acl/{ADMIN_POLICY}", {"policy": p["admin_policy"]}, root)
        # Each run renews the periodic admin token, so it lives as long as the stack is deployed.
        _put(p, active, "auth/token/renew-self", {}, admin)
        if p["revoke_root"] and root:
            _put(p, active, "auth/token/revoke-self", {}, root)
            root = ""
        return UpdateResult({**news, "unseal_keys": o["unseal_keys"], "root_token": root, "admin_token": admin})

    @staticmethod
    def _active(p: dict[str, Any]) -> Optional[str]:
        for address in p["node_addresses"]:
            if _get(p, address, "sys/health").status_code == 200:
                return address
        return None

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)


class VaultBootstrap(Resource, module="vault", name="Bootstrap"):
    """Initialises (`key_shares`/`key_threshold`, 5/3 in prod), unseals every node, writes the
    config-admin policy and creates a periodic config-admin token; `revoke_root` revokes root after."""

    unseal_keys: pulumi.Output[list]
    root_token: pulumi.Output[str]
    admin_token: pulumi.Output[str]

    def __init__(self, name: str, *, node_addresses: pulumi.Input[list[str]], admin_policy: pulumi.Input[str],
                 ca_cert_pem: pulumi.Input[str] = "", key_shares: int = 5, key_threshold: int = 3,
                 revoke_root: bool = True, admin_token_period: str = "768h",
                 opts: Optional[pulumi.ResourceOptions] = None):
        if not 1 <= key_threshold <= key_shares:
            raise ValueError(f"key_threshold must be between 1 and key_shares ({key_shares})")
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            additional_secret_outputs=["unseal_keys", "root_token", "admin_token"]))
        super().__init__(_BootstrapProvider(), name, {
            "node_addresses": node_addresses, "ca_cert_pem": ca_cert_pem, "admin_policy": admin_policy,
            "key_shares": key_shares, "key_threshold": key_threshold, "revoke_root": revoke_root,
            "admin_token_period": admin_token_period,
            "unseal_keys": None, "root_token": None, "admin_token": None,
        }, opts)
