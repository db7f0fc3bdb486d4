"""The benchmark still measures what its docstring says (`python -m bench.service_bench --quick`: few
samples, every measure and floor run for real). It checks no target: timing belongs to `make bench` on an
idle machine, not to a test on a shared one."""
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.integration

MEASURES = ("create an env var", "list 1,000 env vars (same bytes)", "start an execution with 20 env vars",
            "throughput, 8 clients, 1 service", "throughput, 8 clients, 3 replicas on PostgreSQL")


def test_every_measure_runs_against_its_floor(toolchain):
    r = subprocess.run([sys.executable, "-m", "bench.service_bench", "--quick"], cwd=REPO_ROOT,
                       env=os.environ.copy(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    for measure in MEASURES:
        assert any(line.startswith(measure) and "ratio" in line for line in lines), (measure, r.stdout[-3000:])
    # Each throughput comparison says what bound it: the CPU of each process per request, both sides.
    assert sum("CPU ms per request: service" in line for line in lines) == 6, r.stdout[-3000:]
