"""Per-environment compositions. A stack named `<composition>` or `<composition>-<anything>` deploys
that composition with the stack's own config:
  dev       Vault on the local container engine, configured, plus the service
  prod      Vault on Kubernetes, configured, plus the service
  existing  only the configuration, applied to a Vault that runs elsewhere"""
import importlib

import pulumi

from tools.lib.stack_outputs import Out

from .config import ConfigError

COMPOSITIONS = ("dev", "prod", "existing")


def composition_for(stack: str) -> str:
    kind = stack.split("-", 1)[0]
    if kind not in COMPOSITIONS:
        raise ConfigError(
            f"stack name {stack!r} selects no composition; "
            f"allowed: {', '.join(COMPOSITIONS)} or <name>-<suffix>"
        )
    return kind


def deploy(stack: str) -> dict:
    """Runs the stack's composition; returns its exported outputs."""
    return importlib.import_module(f"stacks.{composition_for(stack)}").deploy()


def export(outputs: dict[str, pulumi.Output]) -> dict[str, pulumi.Output]:
    """Exports a composition's outputs as the stack's; returns them, for `deploy`'s callers. Their names are
    those the tools read (tools/lib/stack_outputs.py `Out`): any other is a mistake."""
    unknown = sorted(set(outputs) - set(Out))
    if unknown:
        raise ValueError(f"outputs {', '.join(unknown)} are not named in tools/lib/stack_outputs.py (Out)")
    for key, value in outputs.items():
        pulumi.export(str(key), value)
    return outputs
