"""A KV v2 secrets engine on a real Vault/OpenBao server."""
import pulumi

from infra.providers.vault import Mount, VaultConnection

cfg = pulumi.Config()
kv = Mount(
    "kv",
    connection=VaultConnection(address=cfg.require("address"), token=cfg.require_secret("token")),
    path=cfg.require("path"),
    type="kv",
    options={"version": "2"},
    description="provider smoke test",
    max_lease_ttl="1h",
)
pulumi.export("accessor", kv.accessor)
