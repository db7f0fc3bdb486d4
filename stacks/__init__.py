"""Per-environment compositions. A stack named `dev`, `dev-<anything>`, `prod` or `prod-<anything>`
deploys the `dev` or `prod` composition with that stack's own config."""
import importlib

from .config import ConfigError

COMPOSITIONS = ("dev", "prod")


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
