"""The sandbox every subprocess job runs in: bubblewrap, started as an unprivileged uid of its own.

A job is untrusted code. It gets:
- a uid that is not the service's (one per worker slot, so two running jobs never share one either):
  setpriv, the first program of the job's command line, drops to it and its group with no supplementary
  groups before anything of the job runs, which needs root or CAP_SETUID + CAP_SETGID, and CAP_KILL to
  end the job. (Not Popen's user=/group=: those make Python fork instead of vfork, and a fork copies the
  service's page tables: 4-7 ms a job for a process of 90-190 MB, against 0.1 ms);
- bubblewrap's namespaces: its own PID namespace (it sees and can signal only its own processes), mount
  namespace (a read-only view of the system: /usr and a few files of /etc; a private tmpfs for its work
  dir and /tmp; none of the service's code, secrets, database or session key), IPC, UTS and cgroup
  namespaces, its own /proc (`proc="private"`; with "none" it has no /proc at all: a container's masked
  /proc cannot be mounted again without unmasking it for the service too), no further user namespaces
  (with its own /proc), and its network namespace unless `network` is "on";
- no_new_privs (setpriv), and resource limits (prlimit): address space, processes, CPU seconds, open
  files, file size; the tmpfs mounts have a size; the output the service keeps is capped by the runner.

Values reach the job through bwrap's own environment, inherited by the command: never its argv (every
process's command line is world-readable in /proc), never a file.
"""
import os
import subprocess
from dataclasses import dataclass

BWRAP = "/usr/bin/bwrap"
SETPRIV = "/usr/bin/setpriv"
PRLIMIT = "/usr/bin/prlimit"
WORKDIR = "/job"
# Files of /etc a shell, Python and TLS clients need; nothing else of the host's /etc is visible.
ETC_FILES = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates",
             "ca-certificates.conf", "resolv.conf", "hosts", "host.conf", "gai.conf", "nsswitch.conf", "passwd",
             "group", "localtime", "services", "protocols", "mime.types", "python3", "python3.11")


class SandboxUnavailable(Exception):
    """The sandbox cannot be set up here: the message says why and what to change."""


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 1 << 30  # address space (RLIMIT_AS): no cgroup delegation is assumed
    processes: int = 128  # RLIMIT_NPROC of the job's uid (one uid per running job)
    cpu_seconds: int = 600
    open_files: int = 1024
    tmpfs_bytes: int = 64 << 20  # each of the work dir and /tmp; also the largest file (RLIMIT_FSIZE)


@dataclass(frozen=True)
class Sandbox:
    uid_base: int = 200_000
    network: str = "on"
    proc: str = "private"
    limits: SandboxLimits = SandboxLimits()

    def uid(self, slot: int) -> int:
        return self.uid_base + slot

    def wrap(self, command: list[str], slot: int) -> list[str]:
        """The argv that runs `command` in the sandbox as the slot's uid (started by a process that may
        switch to it: root, or CAP_SETUID + CAP_SETGID)."""
        lim, uid = self.limits, self.uid(slot)
        argv = [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs", "--inh-caps=-all", "--",
                PRLIMIT, f"--as={lim.memory_bytes}", f"--nproc={lim.processes}", f"--cpu={lim.cpu_seconds}",
                f"--nofile={lim.open_files}", f"--fsize={lim.tmpfs_bytes}", "--core=0", "--",
                BWRAP, "--unshare-all", "--unshare-user", *(["--share-net"] if self.network == "on" else []),
                "--die-with-parent", "--new-session",
                "--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            path = f"/{top}"
            if os.path.islink(path):  # merged /usr: /bin -> usr/bin
                argv += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                argv += ["--ro-bind", path, path]
        for name in ETC_FILES:
            argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        if self.proc == "private":  # --disable-userns writes the sandbox's own /proc/sys
            argv += ["--proc", "/proc", "--disable-userns"]
        argv += ["--dev", "/dev",
                 "--size", str(lim.tmpfs_bytes), "--tmpfs", "/tmp",
                 "--size", str(lim.tmpfs_bytes), "--tmpfs", WORKDIR,
                 "--chdir", WORKDIR, "--", *command]
        return argv

    def check(self) -> None:
        """Runs a probe job the way every job runs; raises SandboxUnavailable saying why and what to change."""
        for tool, package in ((BWRAP, "bubblewrap"), (SETPRIV, "util-linux"), (PRLIMIT, "util-linux")):
            if not os.access(tool, os.X_OK):
                raise SandboxUnavailable(f"{tool} is missing: install the Debian package {package}")
        # Its own PID namespace, no host secrets in view, its uid, writable private dirs.
        probe = "test $$ -le 2 && test ! -e /etc/shadow && id -u && touch /tmp/w ./w"
        try:
            r = subprocess.run(self.wrap(["/bin/sh", "-c", probe], 0), env={"PATH": "/usr/bin:/bin"},
                               capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SandboxUnavailable(f"the sandbox probe could not run: {e}") from None
        stderr = r.stderr.decode(errors="replace").strip()
        if r.returncode != 0 and stderr.startswith("setpriv:"):  # it could not take the job's identity
            raise SandboxUnavailable(
                f"the service cannot start jobs as uid {self.uid(0)} ({stderr}): run it as root, or give it "
                "CAP_SETUID, CAP_SETGID and CAP_KILL (in a container: user 0 with cap_add SETUID SETGID KILL)")
        if r.returncode != 0 or r.stdout.decode().strip() != str(self.uid(0)):
            raise SandboxUnavailable(_explain(stderr))


def _explain(stderr: str) -> str:
    """bubblewrap's error with what to change for the causes met in practice."""
    remedy = ""
    if "proc" in stderr and "not permitted" in stderr.lower():
        remedy = ("the container masks parts of /proc, so the sandbox cannot mount a /proc of its own: set "
                  "ENVVARS_JOB_PROC=none (jobs then have no /proc), or run the service container with /proc "
                  "unmasked (podman --security-opt unmask=ALL; Docker: systempaths=unconfined), which also lets "
                  "the service write the host's sysctls: only in a user-namespaced container")
    elif "namespace" in stderr.lower() or "uid map" in stderr.lower() or "not permitted" in stderr.lower():
        remedy = ("unprivileged user namespaces are unavailable: allow them (sysctl user.max_user_namespaces > 0, "
                  "kernel.unprivileged_userns_clone=1 where it exists, kernel.apparmor_restrict_unprivileged_userns=0) "
                  "or, in a container, use a seccomp profile that allows unshare/clone of user namespaces")
    return f"the job sandbox (bubblewrap) failed: {stderr or 'no error text'}" + (f"; {remedy}" if remedy else "")

