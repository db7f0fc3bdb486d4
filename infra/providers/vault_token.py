"""A periodic Vault token kept alive by the stack: every `preview`, `up` and `refresh` renews it (a periodic
token lives one more period from each renewal) and reports when it would expire.

Nothing else renews the config-admin token, so the stack's scheduled `up` is what keeps it; the report
(a gauge pushed to a Prometheus Pushgateway, group job="vault-tokens") is what an alert watches, so a
stack nobody deploys any more is noticed before its token lapses:
  vault_token_expiry_timestamp_seconds{token}   unix time the token expires unless renewed
  vault_token_period_seconds{token}             its period (a renewal's worth of life)
"""
import time
import urllib.request
from typing import Any, Optional

import hvac
import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from infra.clients import kube_forward, vault_ops

from .base import ManagedProvider
from .vault import CONNECTION, LOCATION

PUSH_JOB = "vault-tokens"


class TokenRenewalError(Exception):
    pass


def renew(address: str, token: str, ca: Optional[str]) -> dict[str, int]:
    """Renews the token (by itself) and returns {"expires": unix seconds, "period": seconds, "ttl": seconds}."""
    c = vault_ops.client(address, token, ca, timeout=30)
    try:
        c.auth.token.renew_self()
        data = c.auth.token.lookup_self()["data"]
    except hvac.exceptions.Forbidden:
        raise TokenRenewalError(
            f"the token on {address} is expired or revoked: nothing can renew it now; make a new config-admin "
            "token with a break-glass root token (docs/runbook-alerts.md#vaulttokenrenewaloverdue)") from None
    except hvac.exceptions.VaultError as e:
        raise TokenRenewalError(f"renewing the token on {address}: {type(e).__name__}: {e.args[0]}"[:300]) from None
    ttl = int(data.get("ttl") or 0)
    return {"expires": int(time.time()) + ttl, "period": int(data.get("period") or 0), "ttl": ttl}


def report_text(name: str, state: dict[str, int]) -> str:
    label = f'{{token="{name}"}}'
    return (
        "# HELP vault_token_expiry_timestamp_seconds When the token expires unless something renews it.\n"
        "# TYPE vault_token_expiry_timestamp_seconds gauge\n"
        f"vault_token_expiry_timestamp_seconds{label} {state['expires']}\n"
        "# HELP vault_token_period_seconds The token's period: the life one renewal gives it.\n"
        "# TYPE vault_token_period_seconds gauge\n"
        f"vault_token_period_seconds{label} {state['period']}\n")


def push(url: str, name: str, state: dict[str, int]) -> None:
    """Replaces this token's gauges on the Pushgateway (a `k8s://` address through the Kubernetes API)."""
    base = f"http://127.0.0.1:{kube_forward.local_port(url)}" if kube_forward.is_forwarded(url) else url
    # The URL is the stack's own Pushgateway, never user input.
    req = urllib.request.Request(f"{base.rstrip('/')}/metrics/job/{PUSH_JOB}/token/{name}",  # noqa: S310
                                 data=report_text(name, state).encode(), method="PUT",
                                 headers={"Content-Type": "text/plain; version=0.0.4"})
    with urllib.request.urlopen(req, timeout=10):  # noqa: S310
        pass


class _TokenRenewalProvider(ManagedProvider):
    follows = (*LOCATION, "node_addresses")
    managed = ("name", "report_url")

    def _renew(self, props: dict[str, Any]) -> dict[str, Any]:
        address, ca = props["address"], props.get("ca_cert_pem")
        if props.get("node_addresses"):
            # The active node: a node the same `up` just unsealed may not know the leader yet.
            address = vault_ops.wait_until(lambda: vault_ops.active_node(props["node_addresses"], ca), 120,
                                           "an active node", error=TokenRenewalError)
        state = renew(address, props["token"], ca)
        if props.get("report_url"):
            try:
                push(props["report_url"], props["name"], state)
            except OSError as e:  # the renewal stands; the alert on a stale report shows a lost push
                pulumi.log.warn(f"could not report the {props['name']} token's expiry: {type(e).__name__}")
        return {"period": state["period"]}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["name"], {**props, **self._renew(props)})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # Every preview and up passes here: the renewal itself changes nothing in the state.
        self._renew(news)
        return super().diff(id_, olds, news)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**news, **self._renew(news)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        outs = {**props, **self._renew(props)}
        return ReadResult(id_, outs, {k: outs.get(k) for k in self.managed + CONNECTION})


class TokenRenewal(Resource, module="vault", name="TokenRenewal"):
    """Renews `connection`'s token on every preview/up/refresh; pushes its expiry to `report_url` (a
    Pushgateway as this machine reaches it; empty: no report). Output `period` (seconds)."""

    period: pulumi.Output[int]

    def __init__(self, name: str, *, connection: Any, token_name: str,
                 node_addresses: Optional[pulumi.Input[list[str]]] = None, report_url: pulumi.Input[str] = "",
                 opts: Optional[pulumi.ResourceOptions] = None):
        """`node_addresses`: a cluster's nodes, renewed through the active one (else `connection`'s address)."""
        super().__init__(_TokenRenewalProvider(), name, {
            **connection.inputs(), "name": token_name, "node_addresses": node_addresses or [],
            "report_url": report_url, "period": None,
        }, opts)
