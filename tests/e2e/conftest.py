"""Fixtures for end-to-end tests: throwaway stacks on a throwaway backend, a real bao dev server."""
import glob
import os
import secrets
import subprocess
import time
from typing import Iterator

import hvac
import pytest
import requests
from pulumi import automation as auto

from tests.conftest import free_port

PROGRAMS = os.path.join(os.path.dirname(__file__), "programs")


@pytest.fixture(scope="session")
def pulumi_backend(tmp_path_factory, toolchain) -> dict[str, str]:
    """A file backend and passphrase of this test run only, so tests never touch the user's stacks."""
    state = tmp_path_factory.mktemp("pulumi-state")
    return {
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_CONFIG_PASSPHRASE": secrets.token_urlsafe(16),
    }


class ThrowawayStack:
    """A stack of one of tests/e2e/programs, driven by the Automation API through the real CLI."""

    def __init__(self, program: str, env: dict[str, str]):
        self.name = f"t{secrets.token_hex(4)}"
        self.backend_dir = env["PULUMI_BACKEND_URL"].removeprefix("file://")
        self.work_dir = os.path.join(PROGRAMS, program)
        self.stack = auto.create_stack(
            self.name,
            work_dir=self.work_dir,
            opts=auto.LocalWorkspaceOptions(env_vars=env),
        )

    def up(self) -> auto.UpResult:
        return self.stack.up(on_output=lambda _l: None, color="never")

    def changes_of_second_up(self) -> dict[str, int]:
        """What a second `up` reports, less the resources it left unchanged."""
        result = self.up()
        return {op: n for op, n in (result.summary.resource_changes or {}).items() if op != "same"}

    def stored_text_contains(self, needle: str) -> bool:
        """Whether `needle` is anywhere in the raw state files or this stack's config file."""
        files = glob.glob(os.path.join(self.backend_dir, "**", "*"), recursive=True)
        files.append(os.path.join(self.work_dir, f"Pulumi.{self.name}.yaml"))
        for f in files:
            if os.path.isfile(f) and needle.encode() in open(f, "rb").read():
                return True
        return False

    def destroy(self) -> None:
        self.stack.destroy(on_output=lambda _l: None, color="never")
        self.stack.workspace.remove_stack(self.name)
        config_file = os.path.join(self.work_dir, f"Pulumi.{self.name}.yaml")
        if os.path.exists(config_file):
            os.remove(config_file)


@pytest.fixture
def throwaway_stack(pulumi_backend) -> Iterator:
    made: list[ThrowawayStack] = []

    def make(program: str) -> ThrowawayStack:
        s = ThrowawayStack(program, dict(pulumi_backend))
        made.append(s)
        return s

    yield make
    for s in made:  # a failed test still cleans up what it made
        try:
            s.destroy()
        except auto.errors.CommandError:
            pass


@pytest.fixture(scope="session")
def bao_dev_server(toolchain, tmp_path_factory) -> Iterator[dict[str, str]]:
    """A real OpenBao dev server on a free loopback port, for this test session."""
    port = free_port()
    token = secrets.token_urlsafe(16)
    log = open(tmp_path_factory.mktemp("bao") / "dev.log", "w")
    proc = subprocess.Popen(
        [toolchain["bao"], "server", "-dev", f"-dev-root-token-id={token}",
         f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    address = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{address}/v1/sys/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"bao dev server did not start; see {log.name}")
    yield {"address": address, "token": token}
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture
def vault_client(bao_dev_server) -> hvac.Client:
    return hvac.Client(url=bao_dev_server["address"], token=bao_dev_server["token"])
