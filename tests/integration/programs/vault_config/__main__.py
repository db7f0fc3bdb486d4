"""stacks.vault.configure_vault against the server named by this stack's config (address, token, CA);
every other setting is the project's own typed stack config (vault-envvars:*)."""
import pulumi

from stacks.config import VaultSettings
from stacks.vault import configure_vault

target = pulumi.Config("target")
vault = configure_vault(
    "vault",
    VaultSettings.load(),
    address=target.require("address"),
    token=target.require_secret("token"),
    ca_cert_pem=target.get("caCertPem") or "",
    adopt_kv_mount=target.get_bool("adoptKv") or False,
    audit_file_path=target.get("auditFilePath") or "/bao/logs/audit.log",
)
pulumi.export("kv_path", vault.kv_path)
pulumi.export("jwt_accessor", vault.jwt_accessor)
pulumi.export("executor_role_id", vault.executor_role_id)
pulumi.export("executor_secret_id", vault.executor_secret_id)
