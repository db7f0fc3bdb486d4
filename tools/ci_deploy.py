"""Non-interactive stack deployments for any CI system.

  python tools/ci_deploy.py preview STACK   the diff, then fail (exit 3) on a guarded replace or delete
  python tools/ci_deploy.py up STACK        the same guard, then `pulumi up`; exit non-zero on failure

Both refresh first (`--refresh`): drift (a deleted object) is put back. Run `up` on a schedule (nightly):
it renews the config-admin token and certificates within their renewal window
(docs/credentials-and-rollouts.md).

Guarded: resources whose replacement or deletion loses data or quorum — the Vault StatefulSet and
every volume claim on Kubernetes; Vault's containers and volumes and the bootstrap on the container
engine. Set ALLOW_DESTRUCTIVE=1 for a change that really means it.

The stack's `vault-envvars:kubeconfig` setting (a path, relative to the project directory, or the content)
becomes KUBECONFIG for `pulumi`: its dynamic providers reach the pods through that cluster's API.
"""
import os
import re
import subprocess
import sys
from typing import Optional

from tools.lib.kubeconfig import kubeconfig_env

GUARDED_TYPES = {
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:core/v1:PersistentVolumeClaim",
    "pulumi-python:dynamic/docker:Volume",
    "pulumi-python:dynamic/vault:Bootstrap",
}
GUARDED_NAME_PARTS = ("vault-vault-",)  # the Raft node containers of the dev stack
DESTRUCTIVE_OPS = {"replace", "create-replacement", "delete-replaced", "delete"}


STEP_RE = re.compile(r"^\s*[-+~]*(?P<type>[\w:./-]+): \((?P<op>[\w-]+)\)")
URN_RE = re.compile(r"\[urn=(?P<urn>[^\]]+)\]")


def _pulumi(*args: str, capture: bool = False, env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run(["pulumi", *args, "--non-interactive"], capture_output=capture, text=True, env=env)


def destructive_steps(diff_text: str) -> list[str]:
    """Guarded replaces and deletes in `pulumi preview --diff` output. The text, not --json: a preview
    can fail on exactly these steps (the API server's dry run refuses to change a StatefulSet's
    immutable fields) and then prints no JSON, but its diff names them."""
    found, pending = [], None
    for line in diff_text.splitlines():
        step = STEP_RE.match(line)
        if step:
            pending = step if step["op"] in DESTRUCTIVE_OPS else None
            continue
        urn = URN_RE.search(line)
        if pending and urn:
            name = urn["urn"].rsplit("::", 1)[-1]
            if pending["type"] in GUARDED_TYPES or any(p in name for p in GUARDED_NAME_PARTS):
                found.append(f"{pending['op']} {pending['type']} {name}")
            pending = None
    return found


def guard(stack: str, env: Optional[dict[str, str]] = None) -> int:
    # --refresh: the diff against what is really there (a deleted object shows as one to create again).
    preview = _pulumi("preview", "--refresh", "--diff", "--stack", stack, capture=True, env=env)
    sys.stdout.write(preview.stdout)
    sys.stderr.write(preview.stderr)
    bad = destructive_steps(preview.stdout)
    if bad and os.environ.get("ALLOW_DESTRUCTIVE") != "1":
        print("refusing: this change would replace or delete resources that hold Vault's data:", file=sys.stderr)
        for line in bad:
            print(f"  {line}", file=sys.stderr)
        print("review it, then run again with ALLOW_DESTRUCTIVE=1 if that is really meant", file=sys.stderr)
        return 3
    return preview.returncode


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("preview", "up"):
        print(__doc__, file=sys.stderr)
        return 2
    action, stack = argv
    with kubeconfig_env(stack) as env:
        code = guard(stack, env)
        if code or action == "preview":
            return code
        return _pulumi("up", "--refresh", "--yes", "--skip-preview", "--stack", stack, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
