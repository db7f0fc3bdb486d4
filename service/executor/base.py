"""What a backend is given and gives back."""
import threading
from dataclasses import dataclass, field
from typing import Protocol

# The job's environment before the user's values: enough for a shell, nothing of the service's own.
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/tmp",
}
MAX_OUTPUT_BYTES = 1 << 20


@dataclass
class JobSpec:
    execution_id: str
    command: list[str]
    env: dict[str, str] = field(repr=False)  # values: never logged, never stored
    timeout_seconds: int


@dataclass
class JobResult:
    exit_code: int | None
    output: bytes
    timed_out: bool = False
    cancelled: bool = False


class Backend(Protocol):
    def run(self, job: JobSpec, cancel: threading.Event) -> JobResult:
        """Runs the job to its end, its timeout, or `cancel`; blocks until then."""

    def abandon(self, execution_id: str) -> None:
        """Stops what is left of the job of an execution whose replica went away (another replica calls it)."""
