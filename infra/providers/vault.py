"""Vault / OpenBao resources over the HTTP API (hvac).

Every resource takes one `VaultConnection`; the providers get it as the inputs `address`, `token`
(always made a Pulumi secret: encrypted in state) and `ca_cert_pem`.
"""
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import hvac
import pulumi
import requests
from pulumi.dynamic import CreateResult, ReadResult, Resource, UpdateResult

from infra.clients import vault_ops
from infra.durations import parse_duration

from .base import ManagedProvider, inputs_of, plain


@dataclass(frozen=True)
class VaultConnection:
    """How to reach a Vault server: its URL, a token and, for a private CA, that CA's PEM."""

    address: pulumi.Input[str]
    token: pulumi.Input[str] = field(repr=False)  # a repr (a log line, an error) never shows it
    ca_cert_pem: pulumi.Input[str] = ""
    # What to do when the server cannot be reached or refuses, by ERROR_KINDS: a stack whose settings name
    # the server (the `existing` one) names those settings here. Appended to the error; never compared.
    hints: Mapping[str, str] = field(default_factory=dict, compare=False)

    def inputs(self, hints: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
        """The providers' connection inputs. Their names are in every resource's state: renaming one
        would make the next `up` update every Vault resource. `hints`: the resource's own, over the
        connection's (no input at all when neither has one)."""
        merged = {**self.hints, **{k: v for k, v in (hints or {}).items() if v}}
        return {"address": self.address, "token": pulumi.Output.secret(self.token), "ca_cert_pem": self.ca_cert_pem,
                **({"hints": merged} if merged else {})}


CONNECTION = ("address", "token", "ca_cert_pem")
# The failures a hint may explain: the server unreachable, its certificate not trusted, the token refused,
# a path already in use (a mount), and any other request Vault rejected (400) for a resource.
ERROR_KINDS = ("unreachable", "tls", "forbidden", "in_use", "rejected")


class VaultSettingError(Exception):
    """A Vault resource failed in a way a setting resolves: Vault's own words, then which setting."""


def _kind_of(err: Exception) -> Optional[str]:
    if isinstance(err, requests.exceptions.SSLError):
        return "tls"
    if isinstance(err, requests.exceptions.ConnectionError):
        return "unreachable"
    if isinstance(err, hvac.exceptions.Forbidden):
        return "forbidden"
    if isinstance(err, hvac.exceptions.InvalidRequest):
        return "in_use" if "already in use" in str(err) else "rejected"
    return None


def explained(method: Callable) -> Callable:
    """A provider method whose failures carry the hint its resource was given for that kind of failure.
    The last argument of every provider method is the resource's properties."""
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any) -> Any:
        try:
            return method(self, *args)
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as err:
            kind = _kind_of(err)
            hint = (args[-1].get("hints") or {}).get(kind) if kind else None
            if not hint:
                raise
            raise VaultSettingError(f"{err}\n  -> {hint}") from None
    return wrapper
# Where the server is. The token is not: a rotated token changes nothing in the state (a narrower one
# may not even be allowed to re-apply what a broader one made).
LOCATION = ("address", "ca_cert_pem")


def client(props: dict[str, Any], timeout: int = 30) -> hvac.Client:
    return vault_ops.client(props["address"], props["token"], props.get("ca_cert_pem"), timeout)


class _MountProvider(ManagedProvider):
    """A secrets engine (`sys/mounts`) or an auth method (`sys/auth`)."""
    follows = LOCATION
    managed = ("path", "type", "description", "options", "default_lease_ttl", "max_lease_ttl", "kind",
               "user_lockout")
    replace_on = ("path", "type", "kind")

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
        if props.get("user_lockout"):
            body["user_lockout_config"] = props["user_lockout"]
        c.adapter.post(f"/v1/{self._api(props)}/{props['path']}/tune", json=body)

    @explained
    def create(self, props: dict[str, Any]) -> CreateResult:
        c = client(props)
        live = self._live(c, props)
        if live is not None and props.get("adopt"):
            # e.g. dev mode's pre-mounted `secret/`: take it over, then tune it like our own; only a mount of
            # the same type and version (tuning a KV v1 mount to version 2 would upgrade it in place)
            version = (props.get("options") or {}).get("version")
            live_version = (live.get("options") or {}).get("version") or ("1" if live["type"] == "kv" else None)
            if live["type"] != props["type"] or (version and str(live_version) != str(version)):
                raise hvac.exceptions.InvalidRequest(
                    f"path is already in use at {props['path']}/ by a {live['type']} mount"
                    f"{f' (version {live_version})' if live_version else ''}, which cannot be adopted as "
                    f"{props['type']}{f' version {version}' if version else ''}")
        else:
            body: dict[str, Any] = {"type": props["type"], "description": props.get("description") or ""}
            if props.get("options"):
                body["options"] = props["options"]
            c.adapter.post(f"/v1/{self._api(props)}/{props['path']}", json=body)
        self._tune(c, props)
        # An adopted mount was there before this stack, with values that are not its own: destroy leaves it.
        return CreateResult(props["path"], {**self._outs(c, props), "adopted": live is not None})

    def _outs(self, c: hvac.Client, props: dict[str, Any]) -> dict[str, Any]:
        live = self._live(c, props)
        return {**props, "accessor": live["accessor"] if live else ""}

    def _live(self, c: hvac.Client, props: dict[str, Any]) -> Optional[dict[str, Any]]:
        mounts = c.adapter.get(f"/v1/{self._api(props)}")["data"]
        return mounts.get(props["path"].rstrip("/") + "/")

    @explained
    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if not self.changed(olds, news):
            return super().update(_id, olds, news)
        c = client(news)
        self._tune(c, news)
        return UpdateResult({**self._outs(c, news), "adopted": bool(olds.get("adopted"))})

    @explained
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

    @explained
    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if props.get("adopted"):
            return  # not this stack's: the mount and its values stay as they were found
        # Unmounting deletes every entry in the same request: minutes for a mount with 10,000s of values.
        client(props, timeout=900).adapter.delete(f"/v1/{self._api(props)}/{props['path']}")


def _seconds(ttl: Optional[str]) -> int:
    """A TTL input in seconds: empty is Vault's default (0), a bare number is already seconds."""
    if not ttl:
        return 0
    ttl = str(ttl)
    return int(ttl) if ttl.isdigit() else parse_duration(ttl)


class Mount(Resource, module="vault", name="Mount"):
    """A secrets engine mounted at `path` (`kind="secret"`) or an auth method (`kind="auth"`)."""

    accessor: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        connection: VaultConnection,
        path: str,
        type: str,  # noqa: A002 (Vault's own field name)
        kind: str = "secret",
        description: str = "",
        options: Optional[dict[str, str]] = None,
        default_lease_ttl: str = "",
        max_lease_ttl: str = "",
        adopt: bool = False,
        user_lockout: Optional[dict[str, str]] = None,
        hints: Optional[Mapping[str, str]] = None,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        """`adopt`: an existing mount of the same type (and version) at `path` is taken over instead of
        failing. `user_lockout`: Vault's user_lockout_config for an auth method (threshold, duration,
        reset). `hints`: what resolves a failure, by ERROR_KINDS (over the connection's)."""
        if kind not in ("secret", "auth"):
            raise ValueError(f"Mount kind must be 'secret' or 'auth', not {kind!r}")
        super().__init__(
            _MountProvider(),
            name,
            {
                **connection.inputs(hints),
                "path": path.strip("/"),
                "type": type,
                "kind": kind,
                "description": description,
                "options": options,
                "default_lease_ttl": default_lease_ttl,
                "max_lease_ttl": max_lease_ttl,
                "adopt": adopt,
                "user_lockout": user_lockout,
                "accessor": None,
            },
            opts,
        )


class _EndpointProvider(ManagedProvider):
    """Writes `data` to `path`; refresh reads `path` back and reports the written keys as they are."""
    follows = LOCATION
    managed = ("path", "data")
    replace_on = ("path",)

    @explained
    def create(self, props: dict[str, Any]) -> CreateResult:
        c = client(props)
        c.adapter.post(f"/v1/{props['path']}", json=plain(props["data"]))
        return CreateResult(props["path"], {**props, **self._read_back(c, props)})

    @explained
    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if not self.changed(olds, news):
            return super().update(_id, olds, news)
        c = client(news)
        c.adapter.post(f"/v1/{news['path']}", json=plain(news["data"]))
        return UpdateResult({**news, **self._read_back(c, news)})

    @staticmethod
    def _read_back(c: hvac.Client, props: dict[str, Any]) -> dict[str, Any]:
        """Values Vault made (a client id, a client secret) that consumers need as outputs."""
        if not (props.get("read_back") or props.get("secret_read_back")):
            return {}
        live = c.adapter.get(f"/v1/{props['path']}")["data"]
        return {"response": {k: live.get(k) for k in props.get("read_back") or []},
                "secret_response": {k: live.get(k) for k in props.get("secret_read_back") or []}}

    @explained
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            live = client(props).adapter.get(f"/v1/{props['path']}")["data"]
        except hvac.exceptions.InvalidPath:
            return ReadResult(None, {})
        data = {k: _normalise(live.get(k), v) for k, v in (props["data"] or {}).items()
                if k not in (props.get("write_only") or [])}
        data.update({k: props["data"][k] for k in props.get("write_only") or []})
        outs = {**props, "data": data}
        if props.get("read_back") or props.get("secret_read_back"):
            outs["response"] = {k: live.get(k) for k in props.get("read_back") or []}
            outs["secret_response"] = {k: live.get(k) for k in props.get("secret_read_back") or []}
        inputs = ("write_only", "read_back", "secret_read_back", "delete_on_destroy")
        return ReadResult(id_, outs, {k: outs.get(k) for k in self.managed + CONNECTION + inputs})

    @explained
    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if not props.get("delete_on_destroy", True):
            return  # settings of a mount (its /config) go away with the mount
        try:
            client(props).adapter.delete(f"/v1/{props['path']}")
        except hvac.exceptions.InvalidPath:
            pass


def _normalise(live: Any, declared: Any) -> Any:
    """Vault's spelling of a value we wrote, made comparable with what we declared."""
    if isinstance(declared, (int, float)) and isinstance(live, (int, float)):
        return type(declared)(live)
    if isinstance(declared, list) and live is None:
        return []
    if isinstance(declared, str) and live is None:
        return ""
    return live


class Endpoint(Resource, module="vault", name="Endpoint"):
    """Any configuration endpoint: a policy, an auth role, an auth method's config, KV settings...

    `data` is written on create and update, read back on refresh (drift shows up in preview) and the
    path is deleted on destroy. Keys in `write_only` (secrets Vault never returns) are not compared.
    """

    response: pulumi.Output[dict]
    secret_response: pulumi.Output[dict]

    def __init__(self, name: str, *, connection: VaultConnection, path: pulumi.Input[str],
                 data: pulumi.Input[dict[str, Any]], write_only: Optional[list[str]] = None,
                 read_back: Optional[list[str]] = None, secret_read_back: Optional[list[str]] = None,
                 delete_on_destroy: bool = True, hints: Optional[Mapping[str, str]] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        if secret_read_back:
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                additional_secret_outputs=["secret_response"]))
        super().__init__(_EndpointProvider(), name, {
            **connection.inputs(hints), "path": path, "data": data, "write_only": write_only or [],
            "delete_on_destroy": delete_on_destroy, "read_back": read_back or [],
            "secret_read_back": secret_read_back or [], "response": None, "secret_response": None,
        }, opts)


class _AuditDeviceProvider(ManagedProvider):
    follows = LOCATION
    managed = ("path", "type", "options", "description")
    replace_on = managed

    @explained
    def create(self, props: dict[str, Any]) -> CreateResult:
        client(props).adapter.put(f"/v1/sys/audit/{props['path']}", json={
            "type": props["type"], "options": props["options"] or {}, "description": props["description"]})
        return CreateResult(props["path"], dict(props))

    @explained
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        devices = client(props).adapter.get("/v1/sys/audit")["data"]
        live = devices.get(props["path"].rstrip("/") + "/")
        if live is None:
            return ReadResult(None, {})
        outs = {**props, "type": live["type"], "options": live.get("options") or {},
                "description": live.get("description") or ""}
        return ReadResult(id_, outs, {k: outs.get(k) for k in self.managed + CONNECTION})

    @explained
    def delete(self, _id: str, props: dict[str, Any]) -> None:
        client(props).adapter.delete(f"/v1/sys/audit/{props['path']}")


class AuditDevice(Resource, module="vault", name="AuditDevice"):
    """An audit device enabled through the API (HashiCorp Vault; OpenBao refuses this by default)."""

    def __init__(self, name: str, *, connection: VaultConnection, path: str, type: str,  # noqa: A002 (Vault's)
                 options: dict[str, str],
                 description: str = "", hints: Optional[Mapping[str, str]] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(_AuditDeviceProvider(), name, {
            **connection.inputs(hints), "path": path, "type": type, "options": options, "description": description,
        }, opts)


class _AppRoleCredentialProvider(ManagedProvider):
    """The role id and one secret id of an AppRole role, for a deployment to log in with."""
    follows = LOCATION
    managed = ("mount", "role", "metadata")
    replace_on = managed

    @explained
    def create(self, props: dict[str, Any]) -> CreateResult:
        c = client(props)
        base = f"/v1/auth/{props['mount']}/role/{props['role']}"
        role_id = c.adapter.get(f"{base}/role-id")["data"]["role_id"]
        issued = c.adapter.post(f"{base}/secret-id", json={"metadata": json.dumps(props["metadata"] or {})})["data"]
        return CreateResult(issued["secret_id_accessor"], {
            **props, "role_id": role_id, "secret_id": issued["secret_id"],
            "secret_id_accessor": issued["secret_id_accessor"],
        })

    @explained
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        c = client(props)
        try:
            resp = c.adapter.post(f"/v1/auth/{props['mount']}/role/{props['role']}/secret-id-accessor/lookup",
                                  json={"secret_id_accessor": id_})
        except (hvac.exceptions.InvalidPath, hvac.exceptions.InvalidRequest):
            return ReadResult(None, {})  # expired or used up: the next `up` issues a new one
        if not resp or not resp.get("data"):
            return ReadResult(None, {})
        return ReadResult(id_, dict(props))

    @explained
    def delete(self, id_: str, props: dict[str, Any]) -> None:
        try:
            client(props).adapter.post(
                f"/v1/auth/{props['mount']}/role/{props['role']}/secret-id-accessor/destroy",
                json={"secret_id_accessor": id_})
        except (hvac.exceptions.InvalidPath, hvac.exceptions.InvalidRequest):
            pass


class AppRoleCredential(Resource, module="vault", name="AppRoleCredential"):
    """`role_id` (plain) and `secret_id` (a Pulumi secret: encrypted in state) of an AppRole role."""

    role_id: pulumi.Output[str]
    secret_id: pulumi.Output[str]
    secret_id_accessor: pulumi.Output[str]

    def __init__(self, name: str, *, connection: VaultConnection, mount: str, role: pulumi.Input[str],
                 metadata: Optional[dict[str, str]] = None, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["secret_id"]))
        super().__init__(_AppRoleCredentialProvider(), name, {
            **connection.inputs(), "mount": mount, "role": role, "metadata": metadata or {},
            "role_id": None, "secret_id": None, "secret_id_accessor": None,
        }, opts)
