"""The Vault pods of a prod stack's StatefulSet as Raft nodes, for the drills (tools/raft_drills.py), the
rolling upgrade (tools/vault_upgrade.py) and the seal migration (tools/vault_seal_migrate.py), through the
Kubernetes API only (the stack's kubeconfig).

A pod cannot be held down: the StatefulSet controller makes it again at once, and the new pod starts
sealed. So `kill` deletes the pod (no grace: a crash) and waits until its successor exists, which is out
of the cluster until someone unseals it; `start` waits until the successor's server answers; `wipe`
deletes the pod's volume claims as well (the node and its disks are gone): the successor comes back empty
on new volumes and joins the cluster by `retry_join` once it is unsealed. `write_peers` puts peers.json in
the data volume and restarts the pod, so the server finds it whether it reads it at start or at unseal.
"""
import json
import time
from typing import Any, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from infra.clients import kube_forward, vault_ops
from infra.server_paths import DATA_DIR
from infra.vault_k8s import CLUSTER_PORT
from tools.lib.drills import step


def pod_exec(core: Any, namespace: str, pod: str, command: list[str], timeout: float = 120) -> tuple[int, str, str]:
    """Runs `command` in the pod's (first) container, as `kubectl exec` does; (exit code, stdout, stderr)."""
    ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace, command=command, stderr=True, stdin=False,
                stdout=True, tty=False, _preload_content=False)
    out, err, deadline = [], [], time.monotonic() + timeout
    while ws.is_open() and time.monotonic() < deadline:
        ws.update(timeout=1)
        out.append(ws.read_stdout())
        err.append(ws.read_stderr())
    ws.close()
    code = ws.returncode
    return (code if code is not None else -1), "".join(out), "".join(err)


class KubeNodes:
    def __init__(self, namespace: str, statefulset: str, nodes: list[str], ca_file: str):
        api = kube_forward.api_client()
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.namespace, self.statefulset, self.nodes, self.verify = namespace, statefulset, nodes, ca_file
        sts = self.apps.read_namespaced_stateful_set(statefulset, namespace)
        self._headless = sts.spec.service_name
        self._claims = [t.metadata.name for t in sts.spec.volume_claim_templates or []]
        self.pods = [f"{statefulset}-{i}" for i in range(sts.spec.replicas)]
        if len(nodes) != len(self.pods):
            raise ValueError(f"{len(nodes)} node addresses for {len(self.pods)} pods of {namespace}/{statefulset}")

    # --- the RaftNodes protocol of tools/lib/raft_nodes.py ---------------------------------------------

    def node_id(self, i: int) -> str:
        return self.pods[i]  # RAFT_NODE_ID is the pod's name

    def raft_address(self, i: int) -> str:
        return f"{self.pods[i]}.{self._headless}:{CLUSTER_PORT}"

    def kill(self, i: int) -> None:
        self.delete_pod(i, grace_seconds=0)

    def start(self, i: int) -> None:
        self.wait_serving(i)

    def write_peers(self, i: int, peers: list[dict]) -> None:
        # The peer list names nodes and addresses, no secret: an argument is fine.
        self.exec(i, ["sh", "-c", 'umask 077 && printf "%s" "$1" > "$2"', "sh", json.dumps(peers),
                      f"{DATA_DIR}/raft/peers.json"])
        self.delete_pod(i, grace_seconds=0)

    def wipe(self, i: int) -> None:
        pod = self.pods[i]
        claims = {f"{t}-{pod}": self._uid(self.core.read_namespaced_persistent_volume_claim, f"{t}-{pod}")
                  for t in self._claims}
        for name in claims:
            self._ignore_missing(self.core.delete_namespaced_persistent_volume_claim, name, self.namespace)
        # A claim in use is only marked for deletion; it goes once no pod uses it. The controller may make
        # the successor before that, naming the dying claim: it stays Pending, and is deleted again.
        deadline = time.monotonic() + 180
        while any(self._uid(self.core.read_namespaced_persistent_volume_claim, n) == u for n, u in claims.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the volume claims of {pod} were not deleted")
            self._ignore_missing(self.core.delete_namespaced_pod, pod, self.namespace, grace_period_seconds=0)
            time.sleep(1)

    # --- pods ---------------------------------------------------------------------------------------

    def delete_pod(self, i: int, grace_seconds: Optional[int] = None) -> None:
        """Deletes the pod (its own grace period, with its pre-stop delay, unless told) and waits until the
        controller has made its successor."""
        pod = self.pods[i]
        old = self._uid(self.core.read_namespaced_pod, pod)
        kwargs = {} if grace_seconds is None else {"grace_period_seconds": grace_seconds}
        self._ignore_missing(self.core.delete_namespaced_pod, pod, self.namespace, **kwargs)
        vault_ops.wait_until(lambda: self._uid(self.core.read_namespaced_pod, pod) not in (None, old), 120,
                             f"the StatefulSet to make {pod} again")

    def wait_serving(self, i: int, timeout: float = 180) -> None:
        """Waits until the pod's container runs and its server answers (sealed, most likely)."""
        pod = self.pods[i]

        def answers() -> bool:
            try:
                p = self.core.read_namespaced_pod(pod, self.namespace)
            except ApiException as e:
                if e.status == 404:  # between the old pod and its successor
                    return False
                raise
            if not any(s.state.running for s in p.status.container_statuses or []):
                return False
            vault_ops.seal_status(self.nodes[i], self.verify, timeout=5)
            return True

        vault_ops.wait_until(answers, timeout, f"{pod} running and answering")

    def revision(self, i: int) -> str:
        """The StatefulSet revision the pod was made from."""
        return self.core.read_namespaced_pod(self.pods[i], self.namespace).metadata.labels.get(
            "controller-revision-hash", "")

    def exec(self, i: int, command: list[str]) -> str:
        code, out, err = pod_exec(self.core, self.namespace, self.pods[i], command)
        if code != 0:
            raise RuntimeError(f"{' '.join(command[:1])} in {self.pods[i]} failed ({code}): {err.strip()[:200]}")
        return out

    def _uid(self, read: Any, name: str) -> Optional[str]:
        try:
            return read(name, self.namespace).metadata.uid
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    @staticmethod
    def _ignore_missing(call: Any, *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except ApiException as e:
            if e.status != 404:
                raise


def rejoined(nodes: KubeNodes, i: int, token: str) -> bool:
    """Pod i unsealed, Ready (in the Services again) and every voter healthy."""
    pod = nodes.core.read_namespaced_pod(nodes.pods[i], nodes.namespace)
    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    active = vault_ops.active_index(nodes.nodes, nodes.verify)
    return ready and active >= 0 and vault_ops.healthy_voters(nodes.nodes[active], token, nodes.verify) == len(
        nodes.nodes)


def step_down_if_leader(nodes: KubeNodes, i: int, token: str, why: str) -> None:
    """Before pod i is replaced: if it leads, it steps down and another pod takes over (`why` says for what)."""
    if vault_ops.active_index(nodes.nodes, nodes.verify) != i:
        return
    step(f"{nodes.pods[i]} is the leader: stepping down, so that {why}")
    vault_ops.client(nodes.nodes[i], token, nodes.verify, timeout=30).sys.step_down()
    vault_ops.wait_until(lambda: vault_ops.active_index(nodes.nodes, nodes.verify) not in (-1, i), 60,
                         "another pod active")
