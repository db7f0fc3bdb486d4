"""Every server the test bed starts, stopped at the end even when the run is interrupted.

Each child runs in a process group of its own, so it can be ended with whatever it started, and a
Ctrl-C in the terminal reaches only the test run, which then stops it in order. `stop_all` (called by
tests/conftest.py when the session ends, also after SIGINT or SIGTERM, and at interpreter exit) stops
every registered server still running, then every other process this one left behind: the Pulumi CLI of
an interrupted `up` with its language host and dynamic providers, which nobody here starts directly.
"""
import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Optional

# id of what is stopped -> how; a server that is not our child (pg_ctl daemonises PostgreSQL) registers
# its own way.
_stops: dict[int, Callable[[], None]] = {}


def start(cmd: list[str], log_path: str, *, cwd: Optional[str] = None, env: Optional[dict] = None,
          append: bool = False) -> subprocess.Popen:
    """Starts `cmd` in a process group of its own, its output (stdout and stderr) into `log_path`."""
    with open(log_path, "a" if append else "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
    register(proc, lambda: stop(proc))
    return proc


def stop(*procs: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stops each process started by `start` with its group: SIGTERM, SIGKILL after `timeout` s."""
    for p in procs:
        unregister(p)
        _signal_group(p, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGKILL)
            p.wait()


def register(what: object, stop_fn: Callable[[], None]) -> None:
    """`stop_all` calls `stop_fn` unless `unregister(what)` came first."""
    _stops[id(what)] = stop_fn


def unregister(what: object) -> None:
    _stops.pop(id(what), None)


def stop_all() -> None:
    """Stops every registered server, newest first, then any process this one still has below it."""
    leftovers = _descendants(os.getpid())  # taken first: a stopped server's children move to init
    while _stops:
        _, stop_fn = _stops.popitem()
        try:
            stop_fn()
        except Exception as e:  # noqa: BLE001 (one server that fails to stop must not keep the others running)
            print(f"devkit: a server did not stop: {type(e).__name__}: {e}", file=sys.stderr)
    pids = [p for p in leftovers if _alive(p)]
    for pid in pids:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            _kill(pid, signal.SIGKILL)


atexit.register(stop_all)


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    # Only while the leader lives: once it is reaped its pid, the group's id, may belong to another process.
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, sig)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaps it if it is our own child
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
