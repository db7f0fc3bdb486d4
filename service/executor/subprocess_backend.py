"""Jobs as child processes of the service, each in the bubblewrap sandbox under a uid of its own
(service/executor/sandbox.py). Without a sandbox (only where the operator said so, loudly) a job runs as
the service's own user: for a single-user laptop, never a shared service."""
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from typing import Optional

from .base import BASE_ENV, MAX_OUTPUT_BYTES, JobResult, JobSpec
from .sandbox import Sandbox


class SubprocessBackend:
    def __init__(self, sandbox: Optional[Sandbox], slots: int = 4, max_output_bytes: int = MAX_OUTPUT_BYTES):
        self._sandbox, self._max_output = sandbox, max_output_bytes
        # One uid per running job: its process limit is its own and no two jobs share an identity.
        self._slots: queue.Queue[int] = queue.Queue()
        for slot in range(slots):
            self._slots.put(slot)

    def run(self, job: JobSpec, cancel: threading.Event) -> JobResult:
        slot = self._slots.get()
        try:
            if self._sandbox is None:
                with tempfile.TemporaryDirectory(prefix="envvars-job-") as workdir:
                    return self._run(job, job.command, cancel, cwd=workdir)
            return self._run(job, self._sandbox.wrap(job.command, slot), cancel)
        finally:
            self._slots.put(slot)

    def abandon(self, execution_id: str) -> None:
        """Nothing is left: a sandboxed job dies with its replica (bubblewrap's --die-with-parent)."""

    def _run(self, job: JobSpec, argv: list[str], cancel: threading.Event, **popen) -> JobResult:
        try:
            proc = subprocess.Popen(argv, env={**BASE_ENV, **job.env}, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                    **popen)
        except OSError as e:
            return JobResult(exit_code=127, output=f"cannot start the command: {e.strerror}\n".encode())
        chunks: list[bytes] = []
        reader = threading.Thread(target=_drain, args=(proc.stdout, chunks, self._max_output), daemon=True)
        reader.start()
        deadline = time.monotonic() + job.timeout_seconds
        timed_out = cancelled = False
        while True:
            try:
                proc.wait(timeout=0.05)  # returns as soon as the job ends (it polls from 0.5 ms up)
                break
            except subprocess.TimeoutExpired:
                if cancel.is_set() or time.monotonic() > deadline:
                    cancelled, timed_out = cancel.is_set(), not cancel.is_set()
                    # Killing bwrap ends the sandbox's PID namespace, and so every process of the job.
                    _kill_group(proc)
                    proc.wait()
                    break
        reader.join(5)
        return JobResult(exit_code=proc.returncode, output=b"".join(chunks)[:self._max_output],
                         timed_out=timed_out, cancelled=cancelled)


def _drain(stream, chunks: list[bytes], limit: int) -> None:
    size = 0
    for chunk in iter(lambda: stream.read(65536), b""):
        if size < limit:  # past the cap the job's output is read and dropped, so the job never blocks
            chunks.append(chunk)
            size += len(chunk)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
