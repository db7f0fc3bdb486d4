"""Audit devices. Vault refuses every request when no audit device can log, so there are always two.

HashiCorp Vault: enabled through the API (infra/vault_configuration.py). OpenBao refuses API-enabled
audit devices by default, so there they are declared in the server configuration, identical on every
node (the cluster components put `server_audit_hcl()` into each node's config).
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class AuditDeviceSpec:
    path: str
    type: str
    options: dict[str, str]
    description: str


def audit_devices(file_path: str) -> list[AuditDeviceSpec]:
    """A file device for retention and a stdout device for the log collector. Values are HMAC'd
    (log_raw off, the default; hmac_accessor on)."""
    return [
        AuditDeviceSpec("file", "file", {"file_path": file_path, "mode": "0600"}, "audit log file"),
        AuditDeviceSpec("stdout", "file", {"file_path": "stdout"}, "audit log to stdout"),
    ]


def server_audit_hcl(file_path: str) -> str:
    """The `audit` stanzas of a server configuration, for OpenBao's declarative audit devices."""
    blocks = []
    for d in audit_devices(file_path):
        opts = "\n".join(f'    {k} = "{v}"' for k, v in d.options.items())
        blocks.append(f'audit "{d.type}" "{d.path}" {{\n  description = "{d.description}"\n  options {{\n{opts}\n  }}\n}}')
    return "\n".join(blocks) + "\n"
