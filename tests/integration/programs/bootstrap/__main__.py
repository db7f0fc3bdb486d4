"""VaultBootstrap as the prod stack uses it (root revoked) on the nodes named in this stack's config."""
import json

import pulumi

from infra.providers.vault_bootstrap import VaultBootstrap
from infra.vault_configuration import config_admin_policy

cfg = pulumi.Config("target")
boot = VaultBootstrap("vault-bootstrap", node_addresses=json.loads(cfg.require("nodes")),
                      ca_cert_pem=cfg.require("caCertPem"), admin_policy=config_admin_policy("secret"),
                      key_shares=5, key_threshold=3, revoke_root=True, seal_type=cfg.get("sealType") or "shamir")
pulumi.export("unseal_keys", boot.unseal_keys)
pulumi.export("recovery_keys", boot.recovery_keys)
pulumi.export("root_token", boot.root_token)
pulumi.export("admin_token", boot.admin_token)
