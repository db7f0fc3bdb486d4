"""Non-interactive stack operations for people and CI (`make up`, `make down`, `make preview`; tools/stack.sh):

  python tools/stack.py up|down|preview STACK

`pulumi` runs with KUBECONFIG from the stack's `kubeconfig` setting (tools/lib/kubeconfig.py): its dynamic
providers (the prod bootstrap reaching the pods through the Kubernetes API) run under the CLI's environment.
`up` refreshes first, checks what was deployed as a user would (tools/stack_check.py) and prints where the
stack answers.
"""
import os
import re
import subprocess
import sys
import time

from tools.lib.kubeconfig import kubeconfig_env
from tools.lib.stack_outputs import PROJECT_DIR, Out, stack_outputs

USAGE = "usage: stack.sh up|down|preview STACK"
_T0 = int(os.environ.get("_T0") or time.time() * 1000)  # tools/lib.sh's clock, when it started one


def _secs(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000 // 100}"


def _step(text: str) -> int:
    now = int(time.time() * 1000)
    print(f"==> [+{_secs(now - _T0)}s] {text}", flush=True)
    return now


def _done(started: int) -> None:
    print(f"    done in {_secs(int(time.time() * 1000) - started)}s", flush=True)


def _die(text: str) -> int:
    print(f"ERROR: {text}", file=sys.stderr)
    return 1


def up(stack: str, env: dict[str, str]) -> int:
    t = _step(f"pulumi up --refresh ({stack})")
    # --refresh: reads what is really there first, so drift (a deleted container, Secret or Vault object) is
    # put back, not reported unchanged. Every up also renews the config-admin token and certificates within
    # their renewal window (docs/credentials-and-rollouts.md).
    code = subprocess.run(["pulumi", "up", "--refresh", "--yes", "--non-interactive", "--skip-preview",
                           "--suppress-progress"], env=env).returncode
    if code:
        return code
    _done(t)
    t = _step("checking what was deployed, as a user would (tools/stack_check.py)")
    if subprocess.run([sys.executable, "tools/stack_check.py", stack], env=env).returncode:
        return _die(f"stack {stack} was deployed but does not work (the failing check is above)")
    _done(t)
    try:
        outputs = stack_outputs(stack, show_secrets=False)
    except subprocess.CalledProcessError:
        outputs = {}
    print_where(stack, outputs)
    return 0


def print_where(stack: str, outputs: dict) -> None:
    """Where the stack answers and how to try it (secrets stay "[secret]": the outputs were read without them)."""
    print()
    print(f"Stack {stack} is up. In a shell with the toolchain (source .toolchain/env.sh):")
    addr = outputs.get(Out.VAULT_ADDRESS)
    if addr is not None:
        print(f"  Vault:  {addr}")
        ca = ""
        if Out.VAULT_CA_CERT in outputs:
            ca = f".pulumi/{stack}-ca.pem"
            with open(ca, "w") as f:
                f.write(f"{outputs[Out.VAULT_CA_CERT]}\n")
            ca = f" VAULT_CACERT={ca}"
        # Only where a root token is kept (dev); prod revokes it, and a k8s:// address is this tool's own.
        if Out.VAULT_ROOT_TOKEN in outputs:
            print(f"  Try it: export VAULT_ADDR={addr}{ca} VAULT_TOKEN=$(pulumi stack output --show-secrets "
                  f"{Out.VAULT_ROOT_TOKEN} -s {stack})")
            print("          $BAO_BIN kv put secret/hello who=you && $BAO_BIN kv get secret/hello")
    url = outputs.get(Out.SERVICE_URL)
    if url is not None:
        print(f'  Dashboard: {url}/dashboard/   sign in with Method "Username": alice or bob; their passwords:')
        print(f"          pulumi stack output --show-secrets {Out.DEMO_USER_PASSWORDS} -s {stack}")
        print(f"  Service: {url}   (OpenAPI: {url}/docs)")
        print(f'  Try it: TOKEN=$(python tools/dev_token.py alice --stack {stack}) && curl -s -H "Authorization: '
              'Bearer $TOKEN" \\')
        print("            -H 'Content-Type: application/json' -d '{\"name\":\"GREETING\",\"value\":\"hello\"}' "
              f"{url}/api/v2/user/env-vars")
    # A k8s://<namespace>/svc/<name>:<port> address (prod) is a Service reached through the Kubernetes API.
    for what, key in (("Prometheus", Out.PROMETHEUS_URL), ("Alertmanager", Out.ALERTMANAGER_URL)):
        url = outputs.get(key)
        if url is None:
            continue
        m = re.fullmatch(r"k8s://([^/]+)/svc/([^:]+):([0-9]+)", str(url))
        if m:
            print(f"  {what}: {url}   (kubectl -n {m[1]} port-forward svc/{m[2]} {m[3]}, then http://127.0.0.1:{m[3]})")
        else:
            print(f"  {what}: {url}")


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        return _die(USAGE)
    action, stack = argv[0], (argv[1] if len(argv) == 2 else "dev")
    if action not in ("up", "down", "preview"):
        return _die(f"unknown action {action}: use up, down or preview")
    os.chdir(PROJECT_DIR)
    code = subprocess.run(["pulumi", "stack", "select", stack, "--create", "--non-interactive"],
                          stdout=subprocess.DEVNULL).returncode
    if code:
        return code
    with kubeconfig_env(stack) as env:
        if action == "up":
            return up(stack, env)
        if action == "down":
            t = _step(f"pulumi destroy ({stack})")
            code = subprocess.run(["pulumi", "destroy", "--yes", "--non-interactive", "--skip-preview",
                                   "--suppress-progress"], env=env).returncode
            if not code:
                _done(t)
            return code
        return subprocess.run(["pulumi", "preview", "--non-interactive", "--diff"], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
