"""A random secret generated once at create and kept (encrypted) in the stack state."""
import secrets
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
