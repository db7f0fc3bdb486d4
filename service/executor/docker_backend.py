"""Jobs as containers on the engine (docker SDK). The values exist in the container's config only while
it runs: it is removed as soon as its output is collected, whatever the outcome."""
import threading
import time

import docker
from docker.errors import APIError, ImageNotFound

from .base import BASE_ENV, MAX_OUTPUT_BYTES, JobResult, JobSpec


class DockerBackend:
    def __init__(self, image: str, docker_host: str = "", mem_limit: str = "256m"):
        self._image, self._mem = image, mem_limit
        self._client = docker.DockerClient(base_url=docker_host) if docker_host else docker.from_env()

    def run(self, job: JobSpec, cancel: threading.Event) -> JobResult:
        try:
            container = self._client.containers.create(
                self._image, command=job.command, environment={**BASE_ENV, **job.env},
                name=f"envvars-job-{job.execution_id}", labels={"vault-envvars.execution": job.execution_id},
                user="65534:65534", read_only=True, tmpfs={"/tmp": "rw,size=64m"}, cap_drop=["ALL"],
                security_opt=["no-new-privileges"], mem_limit=self._mem, network_disabled=True, init=True,
                working_dir="/tmp")
        except ImageNotFound:
            return JobResult(exit_code=127, output=f"image {self._image} not found\n".encode())
        try:
            container.start()
            deadline = time.monotonic() + job.timeout_seconds
            timed_out = cancelled = False
            while True:
                container.reload()
                if container.status in ("exited", "dead"):
                    break
                if cancel.is_set() or time.monotonic() > deadline:
                    cancelled, timed_out = cancel.is_set(), not cancel.is_set()
                    container.kill()
                    break
                time.sleep(0.05)
            code = container.wait(timeout=30)["StatusCode"]
            output = container.logs(stdout=True, stderr=True)[:MAX_OUTPUT_BYTES]
            return JobResult(exit_code=code, output=output, timed_out=timed_out, cancelled=cancelled)
        finally:
            try:
                container.remove(force=True)
            except APIError:
                pass
