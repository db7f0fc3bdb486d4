"""Where the tools (drills, upgrade, unseal) find a prod stack's key shares (docs/seals.md).

Shamir: the unseal keys are the stack's secret output `vault_unseal_keys`. An auto seal without custodians:
the recovery shares are no output at all; the stack says where they are (`vault_recovery_keys_location`), in
the vault-bootstrap resource's state, encrypted by the stack's secrets provider, and they are read from there
into memory only when a tool needs a break-glass root token. An auto seal with custodians
(`recoveryPgpKeys`): each share is encrypted to its holder, and no tool can use them: the custodians make a
root token themselves (`bao operator generate-root`).
"""
import json
import os
import subprocess
from typing import Optional

from tools.lib.stack_outputs import PROJECT_DIR, Out

BOOTSTRAP = "vault-bootstrap"


class KeysUnavailable(RuntimeError):
    pass


def state_keys(stack: str, env: Optional[dict] = None, cwd: str = PROJECT_DIR) -> list[str]:
    """The bootstrap's shares from the stack's state (`pulumi stack export --show-secrets`), never printed."""
    r = subprocess.run(["pulumi", "stack", "export", "--show-secrets", "--stack", stack], cwd=cwd,
                       env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        # pulumi's error names the stack and the passphrase problem, never a secret.
        raise KeysUnavailable(f"pulumi stack export --stack {stack} failed: {r.stderr.strip()[-300:]}")
    resources = json.loads(r.stdout).get("deployment", {}).get("resources") or []
    for res in resources:
        if res.get("urn", "").endswith(f"::{BOOTSTRAP}"):
            out = res.get("outputs") or {}
            keys = _plain(out.get("recovery_keys")) or _plain(out.get("unseal_keys")) or []
            if keys:
                return list(keys)
    raise KeysUnavailable(f"stack {stack} holds no key shares in its state (no {BOOTSTRAP} resource with keys)")


def _plain(value):
    """A secret in `--show-secrets` export is {<signature>: ..., "plaintext": <its JSON>}."""
    if isinstance(value, dict) and "plaintext" in value:
        return json.loads(value["plaintext"])
    return value


def with_keys(stack: str, outputs: dict, env: Optional[dict] = None, cwd: str = PROJECT_DIR) -> dict:
    """`outputs`, with the recovery shares read from the state when that is where the stack says they are
    (in memory only: `vault_recovery_keys`)."""
    if outputs.get(Out.VAULT_RECOVERY_KEYS_LOCATION) and not outputs.get(Out.VAULT_RECOVERY_KEYS):
        return {**outputs, Out.VAULT_RECOVERY_KEYS.value: state_keys(stack, env, cwd)}
    return outputs


def keys_of(outputs: dict) -> list[str]:
    """The shares a break-glass root token (and, with Shamir, an unseal) takes: unseal keys or recovery shares."""
    keys = outputs.get(Out.VAULT_UNSEAL_KEYS) or outputs.get(Out.VAULT_RECOVERY_KEYS)
    if keys:
        return list(keys)
    if outputs.get(Out.VAULT_RECOVERY_KEYS_PGP):
        raise KeysUnavailable("the recovery shares are encrypted to their custodians (recoveryPgpKeys): no tool can "
                              "use them; the custodians make a root token with `bao operator generate-root`")
    raise KeysUnavailable("no key shares: the stack has no vault_unseal_keys output and says nothing of "
                          "recovery shares (read them with tools.lib.seal_keys.with_keys)")
