"""The Vault pods of a prod stack's StatefulSet as Raft nodes, for the drills (tools/raft_drills.py), the
rolling upgrade (tools/vault_upgrade.py) and the seal migration (tools/vault_seal_migrate.py), through the
Kubernetes API only (the stack's kubeconfig).

The StatefulSet controller makes a deleted pod again at once, and with an auto seal it unseals itself. So
`kill` stops the server and the kubelet restarts it in the same pod; `wipe` (the machine and its disks
lost) cordons the pod's node and deletes the pod and its volume claims: the successor stays
Pending (no other node is free under the required anti-affinity) until `start` uncordons the node and
waits until the successor's server answers (empty, on new volumes: it joins by `retry_join` once
unsealed); `release` uncordons whatever a failed drill left cordoned. `write_peers` puts peers.json in
the data volume and restarts the server in place, so it finds it whether it reads it at start or at unseal.
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
        self._node_of: dict[int, str] = {}  # the node each killed pod ran on
        self._held: dict[int, str] = {}  # pods `wipe` keeps down: their nodes, cordoned
        if len(nodes) != len(self.pods):
            raise ValueError(f"{len(nodes)} node addresses for {len(self.pods)} pods of {namespace}/{statefulset}")

    # --- the RaftNodes protocol of tools/lib/raft_nodes.py ---------------------------------------------

    def node_id(self, i: int) -> str:
        return self.pods[i]  # RAFT_NODE_ID is the pod's name

    def raft_address(self, i: int) -> str:
        return f"{self.pods[i]}.{self._headless}:{CLUSTER_PORT}"

    def kill(self, i: int) -> None:
        """The server stopped and restarted in place by the kubelet (its pod, and so its node, kept: a pod
        deleted instead could lose its node to a successor `wipe` keeps Pending)."""
        self._node_of[i] = self.core.read_namespaced_pod(self.pods[i], self.namespace).spec.node_name
        self._restart_in_place(i)

    def start(self, i: int) -> None:
        if i in self._held:
            self._schedulable(self._held.pop(i), True)
        self.wait_serving(i)

    def release(self) -> None:
        for node in self._held.values():
            self._schedulable(node, True)
        self._held.clear()

    def write_peers(self, i: int, peers: list[dict]) -> None:
        self.wait_serving(i)  # written through `exec`: the killed pod's successor runs first
        # The peer list names nodes and addresses, no secret: an argument is fine.
        self.exec(i, ["sh", "-c", 'umask 077 && printf "%s" "$1" > "$2"', "sh", json.dumps(peers),
                      f"{DATA_DIR}/raft/peers.json"])
        self._restart_in_place(i)

    def _restart_in_place(self, i: int) -> None:
        """SIGTERM to the server (PID 1 of the container, which handles it); the kubelet starts the container
        again in the same pod. Waits until it has."""
        def restarts() -> int:
            p = self.core.read_namespaced_pod(self.pods[i], self.namespace)
            return sum(c.restart_count for c in p.status.container_statuses or [])
        before = restarts()
        pod_exec(self.core, self.namespace, self.pods[i], ["sh", "-c", "kill -TERM 1"])
        vault_ops.wait_until(lambda: restarts() > before, 120, f"{self.pods[i]}'s server restarted")

    def wipe(self, i: int) -> None:
        """The machine is gone with its disks: its volume claims deleted and the pod kept down until `start`.
        Its node is cordoned, and the required anti-affinity leaves the successor no other node, so it stays
        Pending (with an auto seal a successor on new volumes would unseal itself and join at once)."""
        node = self._node_of.get(i) or self.core.read_namespaced_pod(self.pods[i], self.namespace).spec.node_name
        self._schedulable(node, False)
        self._held[i] = node
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

    def _schedulable(self, node: str, yes: bool) -> None:
        self.core.patch_node(node, {"spec": {"unschedulable": not yes}})

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
