"""Jobs as child processes of the service, in their own session (so a timeout kills the whole tree)."""
import os
import signal
import subprocess
import tempfile
import threading
import time

from .base import BASE_ENV, MAX_OUTPUT_BYTES, JobResult, JobSpec


class SubprocessBackend:
    def run(self, job: JobSpec, cancel: threading.Event) -> JobResult:
        with tempfile.TemporaryDirectory(prefix="envvars-job-") as workdir:
            try:
                proc = subprocess.Popen(job.command, env={**BASE_ENV, **job.env}, cwd=workdir,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            except OSError as e:
                return JobResult(exit_code=127, output=f"cannot start the command: {e.strerror}\n".encode())
            chunks: list[bytes] = []
            reader = threading.Thread(target=_drain, args=(proc.stdout, chunks), daemon=True)
            reader.start()
            deadline = time.monotonic() + job.timeout_seconds
            timed_out = cancelled = False
            while proc.poll() is None:
                if cancel.is_set() or time.monotonic() > deadline:
                    cancelled, timed_out = cancel.is_set(), not cancel.is_set()
                    _kill_group(proc)
                    break
                time.sleep(0.02)
            proc.wait()
            reader.join(5)
            return JobResult(exit_code=proc.returncode, output=b"".join(chunks)[:MAX_OUTPUT_BYTES],
                             timed_out=timed_out, cancelled=cancelled)


def _drain(stream, chunks: list[bytes]) -> None:
    size = 0
    for chunk in iter(lambda: stream.read(65536), b""):
        if size < MAX_OUTPUT_BYTES:
            chunks.append(chunk)
            size += len(chunk)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
