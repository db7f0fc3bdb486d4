"""Typed stack configuration: every config read of the project happens here, validated once, with an
error that names the key and the allowed values."""
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

NAMESPACE = "vault-envvars"
DEFAULT_BAO_IMAGE = "localhost/vault-envvars/openbao:2.7.2"


class ConfigError(Exception):
    """A bad stack setting; the message names the key and what is allowed."""


class _Reader:
    def __init__(self, config: Optional[pulumi.Config] = None):
        self._cfg = config or pulumi.Config(NAMESPACE)

    def key(self, name: str) -> str:
        return f"{NAMESPACE}:{name}"

    def choice(self, name: str, allowed: Sequence[str], default: str) -> str:
        value = self._cfg.get(name) or default
        if value not in allowed:
            raise ConfigError(
                f"stack config {self.key(name)} = {value!r} is not allowed; allowed values: {', '.join(allowed)}"
            )
        return value

    def string(self, name: str, default: str) -> str:
        value = self._cfg.get(name)
        if value is None:
            return default
        if not value.strip():
            raise ConfigError(f"stack config {self.key(name)} must not be empty")
        return value

    def port(self, name: str, default: int) -> int:
        raw = self._cfg.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"stack config {self.key(name)} = {raw!r} is not a port number (0-65535)") from None
        if not 0 <= value <= 65535:
            raise ConfigError(f"stack config {self.key(name)} = {value} is out of range; allowed values: 0-65535")
        return value


@dataclass(frozen=True)
class DevConfig:
    """Settings of the `dev` stack (Pulumi.dev.yaml)."""

    vault_mode: str
    vault_image: str
    vault_host_port: int  # 0: the engine picks a free port, kept for the container's life

    @classmethod
    def load(cls, config: Optional[pulumi.Config] = None) -> "DevConfig":
        r = _Reader(config)
        return cls(
            vault_mode=r.choice("vaultMode", ("dev",), "dev"),
            vault_image=r.string("vaultImage", DEFAULT_BAO_IMAGE),
            vault_host_port=r.port("vaultHostPort", 0),
        )


@dataclass(frozen=True)
class ProdConfig:
    """Settings of the `prod` stack (Pulumi.prod.yaml)."""

    namespace: str
    render_dir: str  # non-empty: write manifests there instead of applying them to a cluster

    @classmethod
    def load(cls, config: Optional[pulumi.Config] = None) -> "ProdConfig":
        r = _Reader(config)
        return cls(
            namespace=r.string("namespace", "vault"),
            render_dir=r.string("renderDir", ""),
        )
