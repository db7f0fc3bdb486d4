"""The local three-node Kubernetes (tools/cluster.sh) for the tests: reused when one is already up (after
`make cluster`), else started for the run and stopped after it, with a check that `down` put the host back
as it found it (sysctls, nftables tables, links, mounts, host paths)."""
import os
import subprocess  # nosec B404: our own script, fixed arguments
from dataclasses import dataclass
from typing import Any, Optional

from devkit.browser import REPO_ROOT

CLUSTER_SH = os.path.join(REPO_ROOT, "tools", "cluster.sh")
HOST_SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
                "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.conf.all.route_localnet")
HOST_PATHS = ("/var/lib/kubelet", "/var/log/pods", "/var/lib/cni", "/run/containerd", "/usr/libexec/kubernetes")


def run_cluster_sh(action: str, timeout: float = 900) -> str:
    done = subprocess.run(["bash", CLUSTER_SH, action], capture_output=True, text=True,  # nosec B603
                          timeout=timeout, check=False)
    if done.returncode:
        raise RuntimeError(f"tools/cluster.sh {action} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")
    return done.stdout


def host_state() -> dict[str, Any]:
    """What the cluster may change on this machine and must restore."""
    def sysctl(key: str) -> str:
        try:
            with open("/proc/sys/" + key.replace(".", "/")) as f:
                return f.read().strip()
        except OSError:
            return "-"
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)  # nosec
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=False)  # nosec
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)  # nosec
    with open("/proc/mounts") as f:
        mounts = sorted(line.split()[1] for line in f)
    return {"sysctls": {k: sysctl(k) for k in HOST_SYSCTLS},
            "nft_tables": sorted(nft.stdout.splitlines()),
            "kube_rules": sorted({line for line in rules.stdout.splitlines() if "KUBE-" in line}),
            "links": sorted(line.split()[0] for line in links.stdout.splitlines()),
            "mounts": mounts,
            "host_paths": sorted(p for p in HOST_PATHS if os.path.exists(p))}


@dataclass
class LocalCluster:
    kubeconfig: str
    started_here: bool
    host_before: Optional[dict[str, Any]] = None

    def stop(self) -> None:
        """Down, if this run started it; then the host must look as it did before `up`."""
        if not self.started_here:
            return
        run_cluster_sh("down", timeout=300)
        before, after = self.host_before or {}, host_state()
        # Sysctls back to their values; nothing left that was not there (what others, like the engine,
        # remove meanwhile is theirs).
        left = {k: sorted(set(after[k]) - set(before[k])) for k in after if k != "sysctls"}
        left = {k: v for k, v in left.items() if v}
        if before.get("sysctls") != after["sysctls"]:
            left["sysctls"] = [before.get("sysctls"), after["sysctls"]]
        if left:
            raise AssertionError(f"tools/cluster.sh down left the host changed: {left}")


def ensure_cluster() -> LocalCluster:
    state = os.environ.get("CLUSTER_STATE", os.path.join(REPO_ROOT, ".cluster"))
    kubeconfig = os.path.join(state, "kubeconfig", "admin.kubeconfig")
    if subprocess.run(["bash", CLUSTER_SH, "status"], capture_output=True, check=False).returncode == 0:  # nosec
        run_cluster_sh("images")  # the images of this checkout
        return LocalCluster(kubeconfig, started_here=False)
    before = host_state()
    run_cluster_sh("up")
    return LocalCluster(kubeconfig, started_here=True, host_before=before)


def kubectl(cluster: LocalCluster, *args: str, stdin: Optional[str] = None, timeout: float = 180,
            check: bool = True) -> subprocess.CompletedProcess:
    """kubectl of the toolchain against the local cluster; raises with its output when `check` and it fails."""
    done = subprocess.run([os.path.join(os.environ["KUBE_NODE_BIN"], "kubectl"), "--kubeconfig", cluster.kubeconfig,  # nosec
                           *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return done
