"""Values picked once at create and kept in the stack state: a random secret (encrypted there) and a free
host port."""
import secrets
import socket
from typing import Any, Optional

import pulumi
from pulumi.dynamic import CreateResult, Resource

from .base import ManagedProvider


class _RandomSecretProvider(ManagedProvider):
    managed = ("length", "prefix")
    replace_on = managed

    def create(self, props: dict[str, Any]) -> CreateResult:
        value = props["prefix"] + secrets.token_urlsafe(int(props["length"]))
        return CreateResult(secrets.token_hex(8), {**props, "result": value})


class RandomSecret(Resource, module="random", name="RandomSecret"):
    """`result` is a secret output: encrypted in state, masked in every display."""

    result: pulumi.Output[str]

    def __init__(self, name: str, *, length: int = 32, prefix: str = "",
                 opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["result"]))
        super().__init__(_RandomSecretProvider(), name, {"length": length, "prefix": prefix, "result": None}, opts)


class _FreePortProvider(ManagedProvider):
    managed = ("host",)
    replace_on = managed

    def create(self, props: dict[str, Any]) -> CreateResult:
        with socket.socket() as s:
            s.bind((props["host"], 0))
            port = s.getsockname()[1]
        return CreateResult(f"{props['host']}:{port}", {**props, "port": port})


class FreePort(Resource, module="random", name="FreePort"):
    """A TCP port that was free on `host` at create, kept for the resource's life: URLs built on it are known
    before the container that listens there exists (an OIDC redirect URI), and survive its replacement."""

    port: pulumi.Output[int]

    def __init__(self, name: str, *, host: str = "127.0.0.1", opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(_FreePortProvider(), name, {"host": host, "port": None}, opts)
