"""Unseals the sealed Vault pods of a Shamir-sealed prod stack with the stack's unseal keys: what a pod
restarted by anything (eviction, OOM, a node upgrade) needs when `seal` is `shamir` (docs/seals.md).

  python tools/vault_unseal.py --stack prod-local

Pods of an auto-sealed stack (static, transit) unseal themselves: for them it only waits and reports.
Exit 1 when a pod stays sealed.
"""
import argparse
import os
import sys
import tempfile

from infra.clients import vault_ops
from tools.lib.drills import step
from tools.lib.kubeconfig import use_stack_kubeconfig
from tools.lib.seal_keys import keys_of, with_keys
from tools.lib.stack_outputs import Out, stack_outputs


def unseal_all(nodes: list[str], keys: list[str], ca: str, timeout: float = 120) -> list[str]:
    """Unseals every node that answers sealed; returns the ones it unsealed (or saw unseal themselves)."""
    sealed = vault_ops.sealed_nodes(nodes, ca)
    for address in sealed:
        step(f"{address} is sealed: unsealing it")
        vault_ops.unseal(address, keys, ca, timeout=timeout)
    return sealed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stack", default="prod-local")
    args = ap.parse_args(argv)
    outputs = stack_outputs(args.stack)
    if not outputs.get(Out.VAULT_NODES):
        ap.error(f"stack {args.stack} has no Vault nodes (a prod stack or a raft-mode dev stack)")
    if outputs.get(Out.NAMESPACE):
        use_stack_kubeconfig(args.stack)
    keys = keys_of(with_keys(args.stack, outputs)) if outputs.get(Out.VAULT_SEAL, "shamir") == "shamir" else []
    with tempfile.TemporaryDirectory() as work:
        ca = os.path.join(work, "ca.pem")
        with open(ca, "w") as f:
            f.write(outputs[Out.VAULT_CA_CERT])
        try:
            done = unseal_all(outputs[Out.VAULT_NODES], keys, ca)
        except TimeoutError as e:
            step(f"FAILED: {e}")
            return 1
    step(f"unsealed: {', '.join(done) if done else 'nothing was sealed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
