"""What `make up` checks before it says a stack is up, as a user would: Vault healthy and unsealed on every
node, the config-admin token alive (and how long it has left), the service ready (its /readyz: Vault and
its database reachable from inside), the dashboard's sign-in answering, Prometheus answering with every
Vault node an up target, the Alertmanager answering. A failed check exits 1 naming it, with the last log
lines of the service's container.

  python tools/stack_check.py STACK [--wait SECONDS]
"""
import argparse
import sys
import time
from typing import Callable

import docker
import requests

from infra.clients import kube_forward, vault_ops
from tools.lib.stack_outputs import Out, stack_outputs

# Vault's health codes for an unsealed node: active, standby, performance standby.
UNSEALED = (200, 429, 473)


def _vault_node(address: str, verify) -> Callable[[], str]:
    def check() -> str:
        # A k8s:// node (prod) through the Kubernetes API, as the stack reached it.
        r = requests.get(f"{kube_forward.local_url(address)}/v1/sys/health", params={"standbyok": "true"},
                         verify=verify, timeout=5)
        if r.status_code in UNSEALED:
            return ""
        return {501: "not initialised", 503: "sealed"}.get(r.status_code, f"HTTP {r.status_code}")
    return check


def human(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    return f"{days}d {rest // 3600}h" if days else f"{rest // 3600}h {rest % 3600 // 60}m {rest % 60}s"


def _admin_token(address: str, token: str, verify) -> Callable[[], str]:
    """Fails when the config-admin token is gone; prints how long it has left before it needs an `up`."""
    def check() -> str:
        r = requests.get(f"{kube_forward.local_url(address)}/v1/auth/token/lookup-self",
                         headers={"X-Vault-Token": token}, verify=verify, timeout=5)
        if r.status_code == 403:
            return "expired or revoked (docs/runbook-alerts.md#vaulttokenexpiressoon)"
        if r.status_code != 200:
            return f"HTTP {r.status_code}"
        data = r.json()["data"]
        print(f"   the config-admin token has {human(data['ttl'])} left (period {human(data.get('period') or 0)}; "
              "every preview/up renews it)")
        return ""
    return check


def _service_ready(url: str) -> Callable[[], str]:
    def check() -> str:
        r = requests.get(f"{url}/readyz", timeout=5)
        return "" if r.status_code == 200 else f"not ready: {r.text.strip()[:200]}"
    return check


def _sign_in(url: str) -> Callable[[], str]:
    def check() -> str:
        r = requests.get(f"{url}/dashboard/login", allow_redirects=False, timeout=5)
        # The sign-in sends the browser to the identity provider.
        return "" if r.status_code in (302, 303) and r.headers.get("location") else f"HTTP {r.status_code}"
    return check


def http_url(address: str) -> str:
    """A monitoring address on this machine: a `k8s://` one (prod) through the Kubernetes API, over plain HTTP."""
    return f"http://127.0.0.1:{kube_forward.local_port(address)}" if kube_forward.is_forwarded(address) else address


def vault_targets(prometheus: str) -> dict[str, str]:
    """Prometheus' targets of the `vault` job: {instance: health} (health: up, down, unknown)."""
    r = requests.get(f"{http_url(prometheus)}/api/v1/targets", params={"state": "active"}, timeout=5)
    r.raise_for_status()
    return {t["labels"]["instance"]: t["health"] for t in r.json()["data"]["activeTargets"]
            if t["labels"].get("job") == "vault"}


def _prometheus(url: str, nodes: int) -> Callable[[], str]:
    def check() -> str:
        targets = vault_targets(url)
        if len(targets) != nodes:
            return f"{len(targets)} vault targets, expected {nodes}"
        down = sorted(i for i, h in targets.items() if h != "up")
        return f"vault targets not up: {', '.join(down)}" if down else ""
    return check


def _alertmanager(url: str) -> Callable[[], str]:
    def check() -> str:
        r = requests.get(f"{http_url(url)}/-/ready", timeout=5)
        return "" if r.status_code == 200 else f"HTTP {r.status_code}"
    return check


def checks(outputs: dict) -> list[tuple[str, Callable[[], str]]]:
    verify = vault_ops.ca_verify(outputs.get(Out.VAULT_CA_CERT) or None)
    nodes = outputs.get(Out.VAULT_NODES) or [outputs[Out.VAULT_ADDRESS]]
    found = [(f"Vault at {n} healthy and unsealed", _vault_node(n, verify)) for n in nodes]
    if outputs.get(Out.VAULT_ADMIN_TOKEN):
        found.append(("the config-admin token alive", _admin_token(nodes[0], outputs[Out.VAULT_ADMIN_TOKEN], verify)))
    service, prometheus, alertmanager = (outputs.get(k) for k in (Out.SERVICE_URL, Out.PROMETHEUS_URL,
                                                                 Out.ALERTMANAGER_URL))
    if service:
        found += [(f"the service's /readyz at {service}", _service_ready(service)),
                  ("the dashboard's sign-in", _sign_in(service))]
    if prometheus and alertmanager:
        found += [(f"Prometheus at {prometheus} with every Vault node an up target", _prometheus(prometheus, len(nodes))),
                  (f"the Alertmanager at {alertmanager}", _alertmanager(alertmanager))]
    return found


def run(name: str, check: Callable[[], str], wait: float) -> str:
    """"" once the check passes within `wait` seconds; else what it last saw."""
    deadline, last = time.monotonic() + wait, "no answer"
    while True:
        try:
            last = check()
        except requests.RequestException as e:
            last = f"no answer ({type(e).__name__})"
        if not last or time.monotonic() > deadline:
            return last
        time.sleep(1)


def service_log(outputs: dict, lines: int = 20) -> str:
    """The service's last log lines (JSON request and event lines: never a value or a token)."""
    name = outputs.get(Out.SERVICE_CONTAINER)
    if not name:
        return ""
    try:
        return docker.from_env().containers.get(name).logs(tail=lines).decode(errors="replace")
    except docker.errors.DockerException as e:
        return f"(no log of {name}: {type(e).__name__})"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stack")
    ap.add_argument("--wait", type=float, default=60, help="seconds each check may take to pass")
    args = ap.parse_args(argv)
    outputs = stack_outputs(args.stack)
    for name, check in checks(outputs):
        problem = run(name, check, args.wait)
        if problem:
            print(f"CHECK FAILED: {name}: {problem}", file=sys.stderr)
            log = service_log(outputs)
            if log:
                print(f"last lines of {outputs[Out.SERVICE_CONTAINER]}:\n{log}", file=sys.stderr)
            return 1
        print(f"ok: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
