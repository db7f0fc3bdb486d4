"""The `dev` stack: Vault on the local container engine."""
import pulumi

from infra.providers.random import RandomSecret
from infra.vault_dev_server import VaultDevServer, VaultDevServerArgs
from stacks.config import DevConfig


def deploy() -> dict[str, pulumi.Output]:
    cfg = DevConfig.load()
    labels = {"vault-envvars.stack": pulumi.get_stack()}
    root_token = RandomSecret("vault-dev-root-token", length=24, prefix="dev-")
    vault = VaultDevServer("vault", VaultDevServerArgs(
        image=cfg.vault_image, root_token=root_token.result, host_port=cfg.vault_host_port, labels=labels,
    ))
    outputs = {"vault_address": vault.address, "vault_root_token": vault.root_token}
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
