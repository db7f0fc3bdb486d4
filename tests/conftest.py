"""Test-wide settings. The suite runs inside the project's toolchain (`make test` sources
.toolchain/env.sh): a missing piece fails loudly instead of skipping."""
import os
import shutil
import socket

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    """A port that is free now on 127.0.0.1, and whose +1 (Vault's cluster port) is free as well."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


@pytest.fixture(scope="session")
def toolchain() -> dict[str, str]:
    """The toolchain's pieces; fails (never skips) when one is missing."""
    missing = [v for v in ("PULUMI_HOME", "DOCKER_HOST", "BAO_BIN") if not os.environ.get(v)]
    if missing or not shutil.which("pulumi"):
        pytest.fail(f"toolchain not loaded ({', '.join(missing) or 'pulumi'} missing): run `make test`, "
                    "or `bash tools/toolchain.sh && source .toolchain/env.sh` first")
    return {"pulumi": shutil.which("pulumi"), "bao": os.environ["BAO_BIN"], "docker_host": os.environ["DOCKER_HOST"]}
