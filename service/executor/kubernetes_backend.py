"""Jobs as Kubernetes Jobs. The values travel in a Secret that the Job owns (so it is deleted with it)
and reach the container through `envFrom`: the Job's spec names the Secret, never a value."""
import threading
import time
from typing import Optional

from kubernetes import client as k8s
from kubernetes import config as kconfig
from kubernetes.client.rest import ApiException

from .base import BASE_ENV, MAX_OUTPUT_BYTES, JobResult, JobSpec
from .sandbox import WORKDIR, SandboxLimits

LABEL = "vault-envvars.execution"
JOB_UID = 65534


class KubernetesBackend:
    """A job pod gets no service-account token, no service links, no volume of the service and no host
    namespace: non-root, every capability dropped, no privilege escalation, a read-only root with
    memory-backed work dir and /tmp, the sandbox's memory and process limits. Its values sit in a Secret
    the Job owns (deleted with it) that only this pod mounts; no pod of the namespace holds a token to
    read Secrets through the API."""

    def __init__(self, namespace: str, image: str, api_client: Optional[k8s.ApiClient] = None,
                 limits: SandboxLimits = SandboxLimits()):
        if api_client is None:
            try:
                kconfig.load_incluster_config()
            except kconfig.ConfigException:
                kconfig.load_kube_config()
            api_client = k8s.ApiClient()
        self._ns, self._image, self._limits = namespace, image, limits
        self._core, self._batch = k8s.CoreV1Api(api_client), k8s.BatchV1Api(api_client)

    def manifest(self, job: JobSpec) -> k8s.V1Job:
        """The Job of an execution; its values come from the Secret of the same name (never in the Job)."""
        name = f"envvars-{job.execution_id}"
        labels = {LABEL: job.execution_id}
        return k8s.V1Job(
            metadata=k8s.V1ObjectMeta(name=name, labels=labels),
            spec=k8s.V1JobSpec(
                backoff_limit=0, active_deadline_seconds=job.timeout_seconds, ttl_seconds_after_finished=300,
                template=k8s.V1PodTemplateSpec(
                    metadata=k8s.V1ObjectMeta(labels=labels),
                    spec=k8s.V1PodSpec(
                        restart_policy="Never", automount_service_account_token=False, enable_service_links=False,
                        host_network=False, host_pid=False, host_ipc=False, share_process_namespace=False,
                        security_context=k8s.V1PodSecurityContext(
                            run_as_non_root=True, run_as_user=JOB_UID, run_as_group=JOB_UID,
                            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
                        volumes=[k8s.V1Volume(name=n, empty_dir=k8s.V1EmptyDirVolumeSource(
                            medium="Memory", size_limit=str(self._limits.tmpfs_bytes))) for n in ("work", "tmp")],
                        containers=[k8s.V1Container(
                            name="job", image=self._image, image_pull_policy="IfNotPresent", command=job.command,
                            working_dir=WORKDIR,
                            env=[k8s.V1EnvVar(name=k, value=v) for k, v in BASE_ENV.items()],
                            env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=name))],
                            volume_mounts=[k8s.V1VolumeMount(name="work", mount_path=WORKDIR),
                                           k8s.V1VolumeMount(name="tmp", mount_path="/tmp")],
                            security_context=k8s.V1SecurityContext(
                                read_only_root_filesystem=True, allow_privilege_escalation=False, privileged=False,
                                capabilities=k8s.V1Capabilities(drop=["ALL"])),
                            # Requests small enough that many jobs fit a node; limits the sandbox's.
                            resources=k8s.V1ResourceRequirements(
                                requests={"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "16Mi"},
                                limits={"cpu": "1", "memory": str(self._limits.memory_bytes),
                                        "ephemeral-storage": str(self._limits.tmpfs_bytes)}),
                        )]))))

    def submit(self, job: JobSpec) -> str:
        """Creates the Job, then its Secret owned by it; returns the Job's name."""
        name = f"envvars-{job.execution_id}"
        labels = {LABEL: job.execution_id}
        body = self.manifest(job)
        created = self._batch.create_namespaced_job(self._ns, body)
        owner = k8s.V1OwnerReference(api_version="batch/v1", kind="Job", name=name, uid=created.metadata.uid,
                                     controller=True, block_owner_deletion=True)
        self._core.create_namespaced_secret(self._ns, k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name=name, labels=labels, owner_references=[owner]),
            type="Opaque", immutable=True, string_data=job.env))
        return name

    def delete(self, name: str) -> None:
        for call in (self._batch.delete_namespaced_job, self._core.delete_namespaced_secret):
            try:
                call(name, self._ns, propagation_policy="Background")
            except ApiException as e:
                if e.status != 404:
                    raise

    def abandon(self, execution_id: str) -> None:
        self.delete(f"envvars-{execution_id}")

    def run(self, job: JobSpec, cancel: threading.Event) -> JobResult:
        name = self.submit(job)
        try:
            deadline = time.monotonic() + job.timeout_seconds + 30
            while True:
                status = self._batch.read_namespaced_job_status(name, self._ns).status
                if status.succeeded or status.failed:
                    break
                if cancel.is_set() or time.monotonic() > deadline:
                    return JobResult(exit_code=None, output=self._logs(name), cancelled=cancel.is_set(),
                                     timed_out=not cancel.is_set())
                time.sleep(1)
            return JobResult(exit_code=0 if status.succeeded else 1, output=self._logs(name))
        finally:
            self.delete(name)

    def _logs(self, name: str) -> bytes:
        pods = self._core.list_namespaced_pod(self._ns, label_selector=f"job-name={name}").items
        if not pods:
            return b""
        return self._core.read_namespaced_pod_log(pods[0].metadata.name, self._ns).encode()[:MAX_OUTPUT_BYTES]
