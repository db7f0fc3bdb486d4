"""Vault / OpenBao resources over the HTTP API (hvac).

Every resource takes the connection as inputs: `address`, `token` (pass it as a Pulumi secret; the
engine keeps it encrypted in state) and optional `ca_cert_pem` for a TLS server with a private CA.
"""
import os
import tempfile
from typing import Any, Optional

import hvac
import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource, UpdateResult

from .base import ManagedProvider, inputs_of

CONNECTION = ("address", "token", "ca_cert_pem")


def client(props: dict[str, Any]) -> hvac.Client:
    verify: Any = True
    if props.get("ca_cert_pem"):
        # requests wants a file; the CA is public, so a temp file is fine.
        fd, path = tempfile.mkstemp(prefix="vault-ca-", suffix=".pem")
        with os.fdopen(fd, "w") as f:
            f.write(props["ca_cert_pem"])
        verify = path
    c = hvac.Client(url=props["address"], token=props["token"], verify=verify, timeout=30)
    # REQUESTS_CA_BUNDLE in the environment would silently override `verify`.
    c.adapter.session.trust_env = False
    return c


class _MountProvider(ManagedProvider):
    """A secrets engine (`sys/mounts`) or an auth method (`sys/auth`)."""

    managed = ("path", "type", "description", "options", "default_lease_ttl", "max_lease_ttl", "kind")
    replace_on = ("path", "type", "kind", "address")

    def _api(self, props: dict[str, Any]) -> str:
        return "sys/auth" if props["kind"] == "auth" else "sys/mounts"

    def _tune(self, c: hvac.Client, props: dict[str, Any]) -> None:
        body = {
            "description": props.get("description") or "",
            "default_lease_ttl": props.get("default_lease_ttl") or "",
            "max_lease_ttl": props.get("max_lease_ttl") or "",
        }
        if props["kind"] == "secret" and props.get("options"):
            body["options"] = props["options"]
        c.adapter.post(f"/v1/{self._api(props)}/{props['path']}/tune", json=body)

    def create(self, props: dict[str, Any]) -> CreateResult:
        c = client(props)
        body: dict[str, Any] = {"type": props["type"], "description": props.get("description") or ""}
        if props.get("options"):
            body["options"] = props["options"]
        c.adapter.post(f"/v1/{self._api(props)}/{props['path']}", json=body)
        self._tune(c, props)
        return CreateResult(props["path"], self._outs(c, props))

    def _outs(self, c: hvac.Client, props: dict[str, Any]) -> dict[str, Any]:
        live = self._live(c, props)
        return {**props, "accessor": live["accessor"] if live else ""}

    def _live(self, c: hvac.Client, props: dict[str, Any]) -> Optional[dict[str, Any]]:
        mounts = c.adapter.get(f"/v1/{self._api(props)}")["data"]
        return mounts.get(props["path"].rstrip("/") + "/")

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        c = client(news)
        self._tune(c, news)
        return UpdateResult(self._outs(c, news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        c = client(props)
        live = self._live(c, props)
        if live is None:
            return ReadResult(None, {})
        cfg = live.get("config", {})
        outs = dict(props)
        outs.update(
            type=live["type"],
            description=live.get("description") or "",
            accessor=live["accessor"],
        )
        if props["kind"] == "secret" and props.get("options") is not None:
            outs["options"] = {k: str(v) for k, v in (live.get("options") or {}).items()}
        # Vault reports TTLs in seconds; keep the declared spelling unless the value really moved.
        for key in ("default_lease_ttl", "max_lease_ttl"):
            if _seconds(props.get(key)) != cfg.get(key, 0):
                outs[key] = f"{cfg.get(key, 0)}s"
        return ReadResult(id_, outs, inputs_of(outs, self.managed + CONNECTION))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        client(props).adapter.delete(f"/v1/{self._api(props)}/{props['path']}")


def _seconds(ttl: Optional[str]) -> int:
    if not ttl:
        return 0
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    ttl = str(ttl)
    return int(ttl[:-1]) * units[ttl[-1]] if ttl[-1] in units else int(ttl)


class Mount(Resource, module="vault", name="Mount"):
    """A secrets engine mounted at `path` (`kind="secret"`) or an auth method (`kind="auth"`)."""

    accessor: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        address: pulumi.Input[str],
        token: pulumi.Input[str],
        path: str,
        type: str,
        kind: str = "secret",
        description: str = "",
        options: Optional[dict[str, str]] = None,
        default_lease_ttl: str = "",
        max_lease_ttl: str = "",
        ca_cert_pem: pulumi.Input[str] = "",
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        if kind not in ("secret", "auth"):
            raise ValueError(f"Mount kind must be 'secret' or 'auth', not {kind!r}")
        super().__init__(
            _MountProvider(),
            name,
            {
                "address": address,
                "token": pulumi.Output.secret(token),
                "ca_cert_pem": ca_cert_pem,
                "path": path.strip("/"),
                "type": type,
                "kind": kind,
                "description": description,
                "options": options,
                "default_lease_ttl": default_lease_ttl,
                "max_lease_ttl": max_lease_ttl,
                "accessor": None,
            },
            opts,
        )
