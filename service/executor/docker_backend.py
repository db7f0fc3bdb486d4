"""Jobs as containers on the engine (docker SDK). The values exist in the container's config only while
it runs: it is removed as soon as its output is collected, whatever the outcome."""
import threading
import time

import docker
from docker.errors import APIError, ImageNotFound, NotFound

from .base import BASE_ENV, MAX_OUTPUT_BYTES, JobResult, JobSpec
from .sandbox import WORKDIR, Sandbox


class DockerBackend:
    """A job container gets no volume, no socket and no credential of the service: an unprivileged uid,
    every capability dropped, no_new_privs, a read-only root with tmpfs work dir and /tmp, the sandbox's
    limits, and no network unless the sandbox's network is "on" (then the engine's default network, never
    the service's)."""

    def __init__(self, image: str, docker_host: str = "", sandbox: Sandbox = Sandbox()):
        self._image, self._sandbox = image, sandbox
        self._client = docker.DockerClient(base_url=docker_host) if docker_host else docker.from_env()

    def abandon(self, execution_id: str) -> None:
        try:
            self._client.containers.get(f"envvars-job-{execution_id}").remove(force=True)
        except NotFound:
            pass

    def run(self, job: JobSpec, cancel: threading.Event) -> JobResult:
        try:
            lim, uid = self._sandbox.limits, self._sandbox.uid(0)
            tmpfs = f"rw,nosuid,nodev,size={lim.tmpfs_bytes},mode=1777"
            container = self._client.containers.create(
                self._image, command=job.command, environment={**BASE_ENV, **job.env},
                name=f"envvars-job-{job.execution_id}", labels={"vault-envvars.execution": job.execution_id},
                user=f"{uid}:{uid}", group_add=[], read_only=True, tmpfs={"/tmp": tmpfs, WORKDIR: tmpfs},
                cap_drop=["ALL"], security_opt=["no-new-privileges"], mem_limit=lim.memory_bytes,
                pids_limit=lim.processes, ulimits=[
                    docker.types.Ulimit(name="nofile", soft=lim.open_files, hard=lim.open_files),
                    docker.types.Ulimit(name="nproc", soft=lim.processes, hard=lim.processes),
                    docker.types.Ulimit(name="cpu", soft=lim.cpu_seconds, hard=lim.cpu_seconds),
                    docker.types.Ulimit(name="fsize", soft=lim.tmpfs_bytes, hard=lim.tmpfs_bytes)],
                network_disabled=self._sandbox.network == "none", init=True, working_dir=WORKDIR)
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
