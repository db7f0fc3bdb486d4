"""Initialise and unseal a Vault/OpenBao cluster once, and hand configuration a narrow admin token.

Shamir (`seal_type` "shamir"): the unseal keys are a secret output, and every `preview`/`up` checks the live
cluster: a sealed node (say, after a restart) shows as a change, and the update unseals it. An auto seal
(static, transit): the cluster is initialised with recovery shares (`recovery_keys`, encrypted to
`recovery_pgp_keys` when given), the nodes unseal themselves, and a node that stays sealed fails the update
with its name. The root token (while it exists) and the admin token are secret outputs: encrypted in the
stack state, never shown.
"""
import contextlib
from typing import Any, Optional

import hvac
import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from infra.clients import kube_forward, vault_ops

from .base import ManagedProvider, plain

ADMIN_POLICY = "config-admin"
FIRST_ANSWER_TIMEOUT = 300  # seconds


class BootstrapError(Exception):
    pass


@contextlib.contextmanager
def _vault_says(path: str, address: str):
    """Vault's refusal as a BootstrapError naming the call; Vault's error text never echoes keys or tokens."""
    try:
        yield
    except hvac.exceptions.VaultError as e:
        said = e.args[0] or (e.text or "").strip()
        raise BootstrapError(f"{path} on {address}: {type(e).__name__}: {said}"[:400]) from None


def _wait(check, timeout: float, what: str, address: str = "") -> Any:
    try:
        return vault_ops.wait_until(check, timeout, what, interval=0.5, error=BootstrapError)
    except BootstrapError as e:
        # Through the Kubernetes API, the client only sees a closed connection: say why it closed.
        why = kube_forward.last_error(address) if kube_forward.is_forwarded(address) else None
        raise BootstrapError(f"{e}; {why}" if why else str(e)) from None


def _unseal(p: dict[str, Any], address: str, keys: list[str]) -> None:
    with _vault_says("sys/unseal", address):
        vault_ops.unseal(address, keys, p.get("ca_cert_pem"), interval=0.5, error=BootstrapError)


def _auto(p: dict[str, Any]) -> bool:
    return (p.get("seal_type") or "shamir") != "shamir"


class _BootstrapProvider(ManagedProvider):
    managed = ("node_addresses", "ca_cert_pem", "admin_policy", "revoke_root", "admin_token_period")

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        for key in ("key_shares", "key_threshold"):
            if olds.get(key) != news.get(key):
                raise BootstrapError(f"{key} cannot change after initialisation (rekey the cluster by hand)")
        if (olds.get("recovery_pgp_keys") or []) != (news.get("recovery_pgp_keys") or []):
            raise BootstrapError("recovery_pgp_keys cannot change after initialisation (rekey the recovery "
                                 "shares by hand: bao operator rekey -target=recovery -pgp-keys=...)")
        old_seal, new_seal = olds.get("seal_type") or "shamir", news.get("seal_type") or "shamir"
        if old_seal != new_seal:
            if new_seal == "shamir":
                raise BootstrapError(f"the seal cannot go back from {old_seal} to shamir by `up` (migrate by hand: "
                                     "bao operator unseal -migrate with the recovery shares)")
            # From Shamir: `up` rolls out the new server config (OnDelete: no pod restarts), then
            # tools/vault_seal_migrate.py moves each pod over; the `up` after it records the change (the
            # unseal keys are the recovery shares now). Until every node reports the new seal, nothing changes.
            o = plain(olds)
            if vault_ops.seal_types(o["node_addresses"], o.get("ca_cert_pem")) != {new_seal}:
                return DiffResult(changes=False)
            return DiffResult(changes=True)
        result = super().diff(id_, olds, news)
        o = plain(olds)
        if not result.changes and vault_ops.sealed_nodes(o["node_addresses"], o.get("ca_cert_pem")):
            result.changes = True  # the update unseals them
        return result

    def create(self, props: dict[str, Any]) -> CreateResult:
        p = plain(props)
        nodes, ca = p["node_addresses"], p.get("ca_cert_pem")
        first = nodes[0]
        # The pods may still be scheduled, their volumes bound and their image pulled.
        status = _wait(lambda: vault_ops.seal_status(first, ca), FIRST_ANSWER_TIMEOUT, f"{first} to answer", first)
        if status.get("initialized"):
            raise BootstrapError(
                f"{first} is already initialised: this stack did not create it and holds none of its keys")
        auto, pgp = _auto(p), p.get("recovery_pgp_keys") or []
        seal_type = "shamir" if not vault_ops.auto_sealed(status) else status.get("type")
        if seal_type != (p.get("seal_type") or "shamir"):
            raise BootstrapError(f"{first} runs the {seal_type} seal, not the configured {p.get('seal_type')}")
        with _vault_says("sys/init", first):
            keys, root = vault_ops.initialize(first, p["key_shares"], p["key_threshold"], ca, pgp if auto else None)
        for address in nodes:
            _unseal(p, address, [] if auto else keys)  # an auto-sealed node is only waited for
        _wait(lambda: vault_ops.is_active(first, ca, timeout=10), 120, "an active node")
        _wait(lambda: vault_ops.healthy_voters(first, root, ca) == len(nodes), 180, "every node to be a voter")

        c = vault_ops.client(first, root, ca, timeout=30)
        with _vault_says(f"sys/policies/acl/{ADMIN_POLICY}", first):
            c.sys.create_or_update_acl_policy(ADMIN_POLICY, p["admin_policy"])
        with _vault_says("auth/token/create-orphan", first):
            admin = c.auth.token.create_orphan(policies=[ADMIN_POLICY], period=p["admin_token_period"],
                                               display_name=ADMIN_POLICY, renewable=True)["auth"]["client_token"]
        if p["revoke_root"]:
            with _vault_says("auth/token/revoke-self", first):
                c.auth.token.revoke_self()
            root = ""
        return CreateResult("bootstrap", {**props, "unseal_keys": [] if auto else keys,
                                          "recovery_keys": keys if auto else [], "root_token": root,
                                          "admin_token": admin})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        p, o = plain(news), plain(olds)
        nodes, ca = p["node_addresses"], p.get("ca_cert_pem")
        if (o.get("seal_type") or "shamir") == "shamir" and _auto(p):
            # A migrated cluster (see diff): Shamir's unseal keys became its recovery shares.
            o = {**o, "recovery_keys": o["unseal_keys"], "unseal_keys": []}
        for address in vault_ops.sealed_nodes(nodes, ca):
            try:  # auto seal: a pod that just restarted unseals itself in seconds; one that does not is named
                _unseal(p, address, o["unseal_keys"])
            except BootstrapError as e:
                if not _auto(p):
                    raise
                raise BootstrapError(f"{e}: with the {p['seal_type']} seal it should have unsealed itself; read "
                                     "its log (the seal key Secret, the transit server)") from None
        active = _wait(lambda: vault_ops.active_node(nodes, ca), 120, "an active node")
        admin, root = o["admin_token"], o.get("root_token") or ""
        if o["admin_policy"] != p["admin_policy"]:
            if not root:
                raise BootstrapError(f"changing the {ADMIN_POLICY} policy needs root, which was revoked: "
                                     "generate a root token with the unseal keys (vault operator generate-root)")
            with _vault_says(f"sys/policies/acl/{ADMIN_POLICY}", active):
                vault_ops.client(active, root, ca, timeout=30).sys.create_or_update_acl_policy(
                    ADMIN_POLICY, p["admin_policy"])
        # Each run renews the periodic admin token, so it lives as long as the stack is deployed.
        with _vault_says("auth/token/renew-self", active):
            vault_ops.client(active, admin, ca, timeout=30).auth.token.renew_self()
        if p["revoke_root"] and root:
            with _vault_says("auth/token/revoke-self", active):
                vault_ops.client(active, root, ca, timeout=30).auth.token.revoke_self()
            root = ""
        return UpdateResult({**news, "unseal_keys": o["unseal_keys"], "recovery_keys": o.get("recovery_keys") or [],
                             "root_token": root, "admin_token": admin})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)


class VaultBootstrap(Resource, module="vault", name="Bootstrap"):
    """Initialises (`key_shares`/`key_threshold`, 5/3 in prod: unseal keys with Shamir, recovery shares with
    an auto seal), unseals every node (or waits for it to unseal itself), writes the config-admin policy and
    creates a periodic config-admin token; `revoke_root` revokes root after."""

    unseal_keys: pulumi.Output[list]  # Shamir; [] with an auto seal
    recovery_keys: pulumi.Output[list]  # auto seal; base64 PGP ciphertexts with recovery_pgp_keys; [] with Shamir
    root_token: pulumi.Output[str]
    admin_token: pulumi.Output[str]

    def __init__(self, name: str, *, node_addresses: pulumi.Input[list[str]], admin_policy: pulumi.Input[str],
                 ca_cert_pem: pulumi.Input[str] = "", key_shares: int = 5, key_threshold: int = 3,
                 revoke_root: bool = True, admin_token_period: str = "768h",  # noqa: S107 (a duration)
                 seal_type: str = "shamir", recovery_pgp_keys: Optional[list[str]] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        if not 1 <= key_threshold <= key_shares:
            raise ValueError(f"key_threshold must be between 1 and key_shares ({key_shares})")
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            additional_secret_outputs=["unseal_keys", "recovery_keys", "root_token", "admin_token"]))
        super().__init__(_BootstrapProvider(), name, {
            "node_addresses": node_addresses, "ca_cert_pem": ca_cert_pem, "admin_policy": admin_policy,
            "key_shares": key_shares, "key_threshold": key_threshold, "revoke_root": revoke_root,
            "admin_token_period": admin_token_period, "seal_type": seal_type,
            "recovery_pgp_keys": list(recovery_pgp_keys or []),
            "unseal_keys": None, "recovery_keys": None, "root_token": None, "admin_token": None,
        }, opts)
