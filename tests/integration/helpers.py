"""Helpers shared by the integration tests (fixtures stay in conftest.py): a throwaway stack of the
project's Vault configuration for a given server."""
import json

from pulumi import automation as auto

from devkit.stacks import ThrowawayStack

VAULT_CONFIG_PROGRAM = "integration/programs/vault_config"


def config_stack(pulumi_backend, server, issuer, *, adopt_kv: bool, flavor: str = "openbao",
                 extra: dict | None = None) -> ThrowawayStack:
    s = ThrowawayStack(VAULT_CONFIG_PROGRAM, dict(pulumi_backend))
    settings = {
        "vault-envvars:vaultAddress": auto.ConfigValue(server.address),
        "vault-envvars:vaultToken": auto.ConfigValue(server.token, secret=True),
        "vault-envvars:adoptKvMount": auto.ConfigValue(str(adopt_kv).lower()),
        "vault-envvars:serverFlavor": auto.ConfigValue(flavor),
        "vault-envvars:jwtIssuer": auto.ConfigValue(issuer.iss),
        "vault-envvars:jwtAudiences": auto.ConfigValue(issuer.audience),
        "vault-envvars:jwtValidationPubkeys": auto.ConfigValue(json.dumps([issuer.public_pem])),
    }
    if server.ca_pem:
        settings["vault-envvars:vaultCaCert"] = auto.ConfigValue(server.ca_pem)
    if server.audit_log:
        settings["vault-envvars:auditFilePath"] = auto.ConfigValue(server.audit_log)
    settings.update({k: auto.ConfigValue(v) for k, v in (extra or {}).items()})
    s.stack.set_all_config(settings)
    return s
