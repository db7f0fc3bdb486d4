"""The local three-node Kubernetes (tools/cluster.sh) gives the prod stack what a real cluster would: three
schedulable nodes, cluster DNS, claims that bind, the project's images, and a pod network that reaches
nothing outside this machine. (That `down` restores the host is checked by the `local_cluster` fixture's
teardown when the run started the cluster.)"""
import json
import uuid

import pytest

from devkit.cluster import kubectl
from stacks.config import DEFAULT_BASE_IMAGE

pytestmark = [pytest.mark.e2e, pytest.mark.k8s]


@pytest.fixture
def namespace(local_cluster):
    name = f"t-cluster-{uuid.uuid4().hex[:6]}"
    kubectl(local_cluster, "create", "namespace", name)
    yield name
    kubectl(local_cluster, "delete", "namespace", name, "--wait=false")


def apply(cluster, manifest: dict) -> None:
    kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(manifest))


def pod_spec(command: list[str], **extra) -> dict:
    return {"terminationGracePeriodSeconds": 1, "automountServiceAccountToken": False, **extra.pop("spec", {}),
            "containers": [{"name": "main", "image": DEFAULT_BASE_IMAGE, "imagePullPolicy": "Never",
                            "command": command, **extra}]}


def test_three_ready_nodes_take_one_pod_each_under_required_anti_affinity(local_cluster, namespace):
    nodes = json.loads(kubectl(local_cluster, "get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == [f"envvars-node-{i}" for i in (1, 2, 3)]
    labels = {"app": "spread"}
    apply(local_cluster, {"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": "spread", "namespace": namespace},
                          "spec": {"replicas": 3, "selector": {"matchLabels": labels}, "template": {
                              "metadata": {"labels": labels},
                              "spec": pod_spec(["sleep", "600"], spec={"affinity": {"podAntiAffinity": {
                                  "requiredDuringSchedulingIgnoredDuringExecution": [
                                      {"labelSelector": {"matchLabels": labels},
                                       "topologyKey": "kubernetes.io/hostname"}]}}})}}})
    kubectl(local_cluster, "-n", namespace, "rollout", "status", "deploy/spread", "--timeout=180s")
    pods = json.loads(kubectl(local_cluster, "-n", namespace, "get", "pods", "-o", "json").stdout)["items"]
    placed = {p["spec"]["nodeName"]: p["status"]["podIP"] for p in pods}
    assert len(placed) == 3, placed
    for node, ip in placed.items():  # each node allocates from its own /24 of the one pod network
        assert ip.startswith(f"10.244.{node.rsplit('-', 1)[1]}."), placed


def test_dns_names_resolve_and_nothing_leaves_the_machine(local_cluster, namespace):
    probe = """
import socket, errno
print("kubernetes", socket.gethostbyname("kubernetes.default.svc.cluster.local"))
try:
    socket.gethostbyname("example.com")
    print("external-name resolved")
except socket.gaierror:
    print("external-name refused")
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("203.0.113.7", 443))
    print("outside reached")
except OSError as e:
    print("outside", errno.errorcode.get(e.errno, e.errno))
"""
    apply(local_cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": namespace},
                          "spec": pod_spec(["python3", "-c", probe], spec={"restartPolicy": "Never"})})
    kubectl(local_cluster, "-n", namespace, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/probe",
            "--timeout=120s")
    out = kubectl(local_cluster, "-n", namespace, "logs", "probe").stdout
    assert "kubernetes 10.96.0.1" in out, out
    assert "external-name refused" in out, out
    assert "outside ENETUNREACH" in out, out


def test_a_claim_binds_to_a_local_volume_owned_by_the_pods_fs_group(local_cluster, namespace):
    apply(local_cluster, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                          "metadata": {"name": "data", "namespace": namespace},
                          "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    apply(local_cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "writer", "namespace": namespace},
                          "spec": pod_spec(["sh", "-c", "echo ok > /data/f && stat -c '%u:%g %a' /data/f /data"],
                                           volumeMounts=[{"name": "data", "mountPath": "/data"}],
                                           spec={"restartPolicy": "Never",
                                                 "securityContext": {"runAsUser": 1000, "runAsGroup": 1000,
                                                                     "fsGroup": 2000, "runAsNonRoot": True},
                                                 "volumes": [{"name": "data",
                                                              "persistentVolumeClaim": {"claimName": "data"}}]})})
    kubectl(local_cluster, "-n", namespace, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/writer",
            "--timeout=120s")
    out = kubectl(local_cluster, "-n", namespace, "logs", "writer").stdout.split("\n")
    assert out[0].startswith("1000:2000"), out  # the file: the pod's user, the fsGroup
    assert out[1].startswith("0:2000"), out     # the volume: group-owned by the fsGroup
    pvc = json.loads(kubectl(local_cluster, "-n", namespace, "get", "pvc", "data", "-o", "json").stdout)
    assert pvc["spec"]["storageClassName"] == "local" and pvc["status"]["phase"] == "Bound"
