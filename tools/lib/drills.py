"""What the drills (tools/drill.py, tools/raft_drills.py), the rolling upgrade and the seal migration share:
one step clock, the stack's KV mount and CA file, every env var value of the mount hashed, and one report
writer (JSON and Markdown)."""
import contextlib
import datetime
import hashlib
import json
import os
import time

import hvac

from tools.lib.stack_outputs import KV_PATH, Out, stack_setting

CLOCK = {"t0": time.monotonic()}


def step(text: str) -> None:
    print(f"==> [+{time.monotonic() - CLOCK['t0']:6.1f}s] {text}", flush=True)


def restart_clock() -> None:
    CLOCK["t0"] = time.monotonic()


class StepTimer:
    """`with timer("name", "what is done"):` prints the step and records its seconds under `name`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str, text: str):
        step(text)
        t = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - t, 2)


def stack_kv_mount(stack: str, outputs: dict) -> str:
    """The stack's KV mount: its `kv_path` output, else its `vault-envvars:kvPath` setting, else `secret`
    (the default of stacks/config.py)."""
    if outputs.get(Out.KV_PATH):
        return outputs[Out.KV_PATH]
    return stack_setting(stack, KV_PATH).strip("/") or "secret"


def stack_ca_file(out_dir: str, stack: str, outputs: dict) -> str:
    """The stack's CA (its `vault_ca_cert` output) written to <out_dir>/<stack>-ca.pem; that path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{stack}-ca.pem")
    with open(path, "w") as f:
        f.write(outputs[Out.VAULT_CA_CERT])
    return path


def kv_hashes(client: hvac.Client, mount: str) -> dict[str, str]:
    """{"<user>/<env var id>": sha256 of the value} for every env var value in the KV mount."""
    out: dict[str, str] = {}
    kv = client.secrets.kv.v2
    try:
        users = kv.list_secrets(path="users", mount_point=mount)["data"]["keys"]
    except hvac.exceptions.InvalidPath:
        return out
    for user in users:
        for env_id in kv.list_secrets(path=f"users/{user}", mount_point=mount)["data"]["keys"]:
            value = kv.read_secret_version(path=f"users/{user}{env_id}", mount_point=mount,
                                           raise_on_deleted_version=True)["data"]["data"]["value"]
            out[f"{user.rstrip('/')}/{env_id}"] = hashlib.sha256(value.encode()).hexdigest()
    return out


def write_report(report: dict, out_dir: str, kind: str, started: datetime.datetime, markdown: str) -> str:
    """Writes <out_dir>/<kind>-<start time>.json and .md, prints where and the verdict; returns the path
    without its suffix."""
    os.makedirs(out_dir, exist_ok=True)
    name = os.path.join(out_dir, f"{kind}-{started.strftime('%Y%m%dT%H%M%SZ')}")
    with open(f"{name}.json", "w") as f:
        json.dump(report, f, indent=2)
    with open(f"{name}.md", "w") as f:
        f.write(markdown)
    step(f"report: {name}.json / .md: {'PASSED' if report.get('passed') else 'FAILED'}")
    return name
