"""Vault policies from policies/*.hcl, with the mount paths and accessors of this deployment filled in."""
import os
import re
from string import Template

POLICY_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "policies")
POLICY_NAMES = ("user", "executor", "snapshot-operator", "config-admin")


def render_policy(name: str, **values: str) -> str:
    """The policy text with `${...}` placeholders replaced; an unfilled placeholder is an error."""
    with open(os.path.join(POLICY_DIR, f"{name}.hcl")) as f:
        text = Template(f.read()).safe_substitute(values)
    missing = sorted(set(re.findall(r"\$\{(\w+)\}", text)))
    if missing:
        raise ValueError(f"policy {name!r} needs values for {', '.join(missing)}")
    return text
