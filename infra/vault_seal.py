"""How a Vault/OpenBao cluster on Kubernetes seals its root key (the `seal` stack setting, docs/seals.md).

- `shamir`: no stanza; the bootstrap holds the unseal keys, and a restarted pod stays sealed until someone
  unseals it (`python tools/vault_unseal.py` or the next `up`).
- `static`: OpenBao's static seal. A 32-byte AES key (64 hex digits) read from a Secret mounted read-only:
  each pod unseals itself at start. The Secret is the operator's (brought by their secret store) or made by
  the stack from a random key kept as a Pulumi secret (`StaticSealKey`). `previous-key` in the same Secret
  and `previous_key_id` let a rotated key open what the old one sealed.
- `transit`: another Vault/OpenBao's transit engine encrypts the root key; each pod asks it at start with a
  token (only encrypt/decrypt on that key) from a Secret, trusting that server's CA from a Secret.

With an auto seal the bootstrap initialises with recovery shares (infra/providers/vault_bootstrap.py).
"""
import secrets
from dataclasses import dataclass
from typing import Any, Optional, Union

import pulumi
import pulumi_kubernetes as k8s
from pulumi.dynamic import CreateResult, Resource

from infra.kube_meta import annotated
from infra.providers.base import ManagedProvider

SEAL_TYPES = ("shamir", "static", "transit")
SEAL_DIR = "/bao/seal"  # the static key Secret, read-only
TRANSIT_CA_DIR = "/bao/seal-ca"  # the transit server's CA, read-only
STATIC_KEY, STATIC_PREVIOUS_KEY = "key", "previous-key"  # the static seal Secret's keys


@dataclass(frozen=True)
class StaticSealArgs:
    """The static seal's key: `secret_name` (in the Vault namespace) holds `key` (32 bytes, raw or as 64 hex
    digits) and, while rotating, `previous-key`."""

    secret_name: str = "vault-seal-key"  # noqa: S105 (a name)
    key_id: str = "1"
    previous_key_id: str = ""  # set while rotating: the Secret's `previous-key` opens what it sealed

    kind = "static"

    def stanza(self) -> dict[str, str]:
        out = {"current_key_id": self.key_id, "current_key": f"file://{SEAL_DIR}/{STATIC_KEY}"}
        if self.previous_key_id:
            out.update(previous_key_id=self.previous_key_id, previous_key=f"file://{SEAL_DIR}/{STATIC_PREVIOUS_KEY}")
        return out

    def volumes(self) -> list[dict]:
        # 0440 and the pods' fsGroup: the server's group reads it, nobody else.
        return [{"name": "seal", "secret": {"secretName": self.secret_name, "defaultMode": 0o440}}]

    def mounts(self) -> list[dict]:
        return [{"name": "seal", "mountPath": SEAL_DIR, "readOnly": True}]

    def env(self) -> list[dict]:
        return []


@dataclass(frozen=True)
class TransitSealArgs:
    """Another Vault's transit engine: `token_secret_name` holds `token` (a token allowed only
    encrypt/decrypt on `transit/<key_name>`), `ca_secret_name` (optional) that server's CA as `ca.pem`."""

    address: str
    key_name: str = "vault-unseal"
    token_secret_name: str = "vault-transit-token"  # noqa: S105 (a name)
    mount_path: str = "transit/"
    ca_secret_name: str = ""

    kind = "transit"

    def stanza(self) -> dict[str, str]:
        """The token comes from the environment (BAO_/VAULT_TOKEN from a Secret), never this file."""
        out = {"address": self.address, "key_name": self.key_name, "mount_path": self.mount_path}
        if self.ca_secret_name:
            out["tls_ca_cert"] = f"{TRANSIT_CA_DIR}/ca.pem"
        return out

    def volumes(self) -> list[dict]:
        if not self.ca_secret_name:
            return []
        return [{"name": "seal-ca", "secret": {"secretName": self.ca_secret_name, "defaultMode": 0o440}}]

    def mounts(self) -> list[dict]:
        return [{"name": "seal-ca", "mountPath": TRANSIT_CA_DIR, "readOnly": True}] if self.ca_secret_name else []

    def env(self) -> list[dict]:
        return [{"name": f"{prefix}_TOKEN", "valueFrom": {"secretKeyRef": {"name": self.token_secret_name,
                                                                            "key": "token"}}}
                for prefix in ("BAO", "VAULT")]  # OpenBao reads BAO_*, HashiCorp Vault VAULT_*


SealArgs = Union[StaticSealArgs, TransitSealArgs]


def seal_kind(seal: Optional[SealArgs]) -> str:
    return seal.kind if seal else "shamir"


def render_stanza(seal: Optional[SealArgs]) -> str:
    if seal is None:
        return ""
    body = "\n".join(f'  {k} = "{v}"' for k, v in seal.stanza().items())
    return f'\nseal "{seal.kind}" {{\n{body}\n}}\n'


class _RandomKeyProvider(ManagedProvider):
    managed = ("bytes",)
    replace_on = managed

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(secrets.token_hex(8), {**props, "hex": secrets.token_hex(int(props["bytes"]))})


class RandomKey(Resource, module="random", name="RandomKey"):
    """`hex`: random bytes as hex digits, picked once, a secret output (encrypted in state, masked)."""

    hex: pulumi.Output[str]

    def __init__(self, name: str, *, length: int = 32, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["hex"]))
        super().__init__(_RandomKeyProvider(), name, {"bytes": length, "hex": None}, opts)


class StaticSealKey(pulumi.ComponentResource):
    """A static seal key made by the stack: 32 random bytes kept as a Pulumi secret, in a Secret the pods
    mount. Whoever reads the stack's state with its passphrase, or the Secret, can unseal a copy of the
    data: docs/seals.md says what this protects against and what it does not."""

    def __init__(self, name: str, *, namespace: pulumi.Input[str], secret_name: str,
                 labels: Optional[dict] = None, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:StaticSealKey", name, None, opts)
        key = RandomKey(f"{name}-random", opts=pulumi.ResourceOptions(parent=self))
        self.secret = k8s.core.v1.Secret(f"{name}-key", metadata={"name": secret_name, "namespace": namespace,
                                                         "labels": labels or {}, **annotated({})},
                                         type="Opaque", string_data={STATIC_KEY: key.hex},
                                         opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})
