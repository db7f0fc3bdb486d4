"""An interrupted test run leaves nothing running: a pytest session that started an OpenBao dev server
through the devkit (and a process nobody registered, as the Pulumi CLI's plugins are) is sent SIGTERM
or SIGINT; the server and that process are gone a few seconds later."""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.integration

INNER = '''
import os
import subprocess
import time

import pytest

from devkit.vault_servers import start_dev_server


@pytest.mark.integration
def test_holds_a_server(tmp_path):
    server = start_dev_server(os.environ["BAO_BIN"], str(tmp_path / "bao"))
    stray = subprocess.Popen(["sleep", "600"])
    with open(os.environ["PIDS_FILE"] + ".tmp", "w") as f:
        f.write(f"{server.processes[0].pid} {stray.pid}")
    os.replace(os.environ["PIDS_FILE"] + ".tmp", os.environ["PIDS_FILE"])
    time.sleep(600)
'''


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_run_stops_what_it_started(toolchain, tmp_path, sig):
    (tmp_path / "test_inner.py").write_text(INNER)
    pids_file = tmp_path / "pids"
    # The project's conftest as a plugin: its hooks, none of this suite's tests.
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
        cwd=REPO_ROOT, env={**os.environ, "PIDS_FILE": str(pids_file)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # As started from a terminal: a run launched in the background (`cmd &` without job control, nohup)
        # inherits SIGINT ignored, and Python then keeps ignoring it instead of raising KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not pids_file.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pids_file.exists(), run.communicate(timeout=30)[0] if run.poll() is not None else "no server"
        server, stray = (int(p) for p in pids_file.read_text().split())
        assert _running(server) and _running(stray)

        run.send_signal(sig)
        out = run.communicate(timeout=30)[0]
        assert run.returncode == pytest.ExitCode.INTERRUPTED, out
        deadline = time.monotonic() + 5
        while (_running(server) or _running(stray)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(server), f"the dev server (pid {server}) outlived the run:\n{out}"
        assert not _running(stray), f"an unregistered child (pid {stray}) outlived the run:\n{out}"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
