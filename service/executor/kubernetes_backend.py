"""Jobs as Kubernetes Jobs. The values travel in a Secret that the Job owns (so it is deleted with it)
and reach the container through `envFrom`: the Job's spec names the Secret, never a value."""
import threading
import time
from typing import Optional

from kubernetes import client as k8s
from kubernetes import config as kconfig
from kubernetes.client.rest import ApiException

from .base import BASE_ENV, MAX_OUTPUT_BYTES, JobResult, JobSpec

LABEL = "vault-envvars.execution"


class KubernetesBackend:
    def __init__(self, namespace: str, image: str, api_client: Optional[k8s.ApiClient] = None):
        if api_client is None:
            try:
                kconfig.load_incluster_config()
            except kconfig.ConfigException:
                kconfig.load_kube_config()
            api_client = k8s.ApiClient()
        self._ns, self._image = namespace, image
        self._core, self._batch = k8s.CoreV1Api(api_client), k8s.BatchV1Api(api_client)

    def submit(self, job: JobSpec) -> str:
        """Creates the Job, then its Secret owned by it; returns the Job's name."""
        name = f"envvars-{job.execution_id}"
        labels = {LABEL: job.execution_id}
        body = k8s.V1Job(
            metadata=k8s.V1ObjectMeta(name=name, labels=labels),
            spec=k8s.V1JobSpec(
                backoff_limit=0, active_deadline_seconds=job.timeout_seconds, ttl_seconds_after_finished=300,
                template=k8s.V1PodTemplateSpec(
                    metadata=k8s.V1ObjectMeta(labels=labels),
                    spec=k8s.V1PodSpec(
                        restart_policy="Never", automount_service_account_token=False,
                        security_context=k8s.V1PodSecurityContext(run_as_non_root=True, run_as_user=65534,
                                                                  seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
                        containers=[k8s.V1Container(
                            name="job", image=self._image, command=job.command,
                            env=[k8s.V1EnvVar(name=k, value=v) for k, v in BASE_ENV.items()],
                            env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=name))],
                            security_context=k8s.V1SecurityContext(
                                read_only_root_filesystem=True, allow_privilege_escalation=False,
                                capabilities=k8s.V1Capabilities(drop=["ALL"])),
                            resources=k8s.V1ResourceRequirements(limits={"cpu": "1", "memory": "256Mi"}),
                        )]))))
        created = self._batch.create_namespaced_job(self._ns, body)
        owner = k8s.V1OwnerReference(api_version="batch/v1", kind="Job", name=name, uid=created.metadata.uid,
                                     controller=True, block_owner_deletion=True)
        self._core.create_namespaced_secret(self._ns, k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name=name, labels=labels, owner_references=[owner]),
            type="Opaque", string_data=job.env))
        return name

    def delete(self, name: str) -> None:
        for call in (self._batch.delete_namespaced_job, self._core.delete_namespaced_secret):
            try:
                call(name, self._ns, propagation_policy="Background")
            except ApiException as e:
                if e.status != 404:
                    raise

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
