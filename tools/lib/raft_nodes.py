"""A stack's Raft nodes as the drills, the upgrade and the seal migration drive them (`RaftNodes`: kill,
start, write peers.json, wipe): the containers of a dev stack in raft mode (`DockerNodes`), the pods of a
prod stack on Kubernetes (tools/lib/kube_nodes.py), the processes of a loopback cluster in the tests; and
the token that drives them (`drill_token`)."""
import contextlib
import json
from typing import Any, Iterator, Protocol

import docker

from infra.clients import kube_forward
from infra.clients.vault_ops import active_index, break_glass_root, wait_until
from infra.providers.docker import copy_files
from tools.lib.kube_nodes import KubeNodes
from tools.lib.kubeconfig import use_stack_kubeconfig
from tools.lib.seal_keys import keys_of
from tools.lib.stack_outputs import Out


class RaftNodes(Protocol):
    nodes: list[str]  # each node's API URL, as this process reaches it
    verify: Any  # CA file (or True)

    def node_id(self, i: int) -> str: ...
    def raft_address(self, i: int) -> str: ...  # host:port of its cluster listener, as peers reach it
    def kill(self, i: int) -> None: ...
    def start(self, i: int) -> None: ...  # comes back sealed
    def write_peers(self, i: int, peers: list[dict]) -> None: ...  # <raft dir>/raft/peers.json, node stopped
    def wipe(self, i: int) -> None: ...  # the node's Raft data, node stopped
    def release(self) -> None: ...  # the drill ended (passed or not): undo what keeps killed nodes down


class DockerNodes:
    """The Raft containers of a dev stack in raft mode, found by their labels."""

    def __init__(self, stack: str, outputs: dict, ca_file: str, engine: docker.DockerClient):
        self.nodes, self.verify, self._engine = outputs[Out.VAULT_NODES], ca_file, engine
        found = {c.labels["vault-envvars.node"]: c for c in engine.containers.list(
            all=True, filters={"label": [f"vault-envvars.stack={stack}", "vault-envvars.node"]})}
        self._containers = [found[f"vault-{i}"] for i in range(1, len(self.nodes) + 1)]

    def node_id(self, i: int) -> str:
        return f"vault-{i + 1}"  # RAFT_NODE_ID, also its network alias

    def raft_address(self, i: int) -> str:
        return f"vault-{i + 1}:8201"

    def kill(self, i: int) -> None:
        self._containers[i].kill()
        self._containers[i].wait(timeout=30)

    def start(self, i: int) -> None:
        self._containers[i].start()

    def release(self) -> None:
        pass  # a stopped container stays down by itself

    def write_peers(self, i: int, peers: list[dict]) -> None:
        c = self._containers[i]
        copy_files(c, {"/bao/data/raft/peers.json": {"content": json.dumps(peers), "mode": 0o600}},
                   c.attrs["Config"]["User"])

    def wipe(self, i: int) -> None:
        c = self._containers[i]
        c.reload()
        volume = next(m["Name"] for m in c.attrs["Mounts"] if m["Destination"] == "/bao/data")
        # A short-lived container of the same image empties the volume (the node itself is stopped).
        self._engine.containers.run(c.image.id, entrypoint=["/bin/sh", "-c", "rm -rf /bao/data/* /bao/data/.[!.]*"],
                                    volumes={volume: {"bind": "/bao/data", "mode": "rw"}}, user="0", remove=True)


def active_node(c: RaftNodes) -> int:
    return active_index(c.nodes, c.verify)


def stack_nodes(stack: str, outputs: dict, ca_file: str) -> RaftNodes:
    """The stack's Raft nodes: the pods of a prod stack on Kubernetes, the containers of a dev-raft stack."""
    if outputs.get(Out.NAMESPACE):
        use_stack_kubeconfig(stack)
        target = kube_forward.parse(outputs[Out.VAULT_NODES][0])
        statefulset = target.name.rsplit("-", 1)[0] if target else "vault"
        return KubeNodes(outputs[Out.NAMESPACE], statefulset, outputs[Out.VAULT_NODES], ca_file)
    return DockerNodes(stack, outputs, ca_file, docker.from_env())


@contextlib.contextmanager
def drill_token(nodes: RaftNodes, outputs: dict) -> Iterator[str]:
    """The stack's root token (dev), or, where the bootstrap revoked it (prod), a break-glass root token
    made from the unseal keys with the config-admin token, revoked when the drill ends."""
    if outputs.get(Out.VAULT_ROOT_TOKEN):
        yield outputs[Out.VAULT_ROOT_TOKEN]
        return
    active = wait_until(lambda: active_node(nodes) + 1, 60, "an active node") - 1
    with break_glass_root(nodes.nodes[active], keys_of(outputs), outputs[Out.VAULT_ADMIN_TOKEN],
                          nodes.verify) as token:
        yield token
