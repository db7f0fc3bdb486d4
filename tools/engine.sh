#!/usr/bin/env bash
# Makes sure a Docker-compatible engine answers, and prints the DOCKER_HOST to use.
# A Docker engine that already answers is used as it is; otherwise rootful Podman (Debian packages) is
# configured for this machine (runc, cgroupfs, ulimits within the hard limits) and serves the Docker
# Engine API on a unix socket in the toolchain cache.
source "$(dirname "$0")/lib.sh"

engine_answers() { DOCKER_HOST=$1 "$REPO_ROOT/.venv/bin/python" - <<'PY' >/dev/null 2>&1
from infra.clients import engine_api; engine_api.client(timeout=5).ping()
PY
}

if [ -n "${DOCKER_HOST:-}" ] && engine_answers "$DOCKER_HOST"; then echo "$DOCKER_HOST"; exit 0; fi
if [ -S /var/run/docker.sock ] && engine_answers unix:///var/run/docker.sock; then
  echo unix:///var/run/docker.sock; exit 0
fi

P=$CACHE_DIR/podman
SOCK=$P/podman.sock
mkdir -p "$P/run" "$P/tmp" "$P/net" "$P/storage"
# Named explicitly, recommended ones included: a podman installed without its recommends has no catatonit
# (every `init: true` container fails) and falls back to CNI networking (no name resolution); netavark
# runs iptables for every network (without it: "netavark: No such file or directory").
apt_install podman runc catatonit netavark aardvark-dns iptables >&2
cat > "$P/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$P/run/events.log"
tmp_dir = "$P/tmp"
[network]
network_backend = "netavark"
network_config_dir = "$P/net"
CONF
cat > "$P/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$P/storage"
runroot = "$P/run"
CONF
cat > "$P/env.sh" <<CONF
export CONTAINERS_CONF=$P/containers.conf
export CONTAINERS_STORAGE_CONF=$P/storage.conf
CONF
source "$P/env.sh"

# Callers running at once (test runs side by side): one starts the service, the others then find it answering
# (without the lock each removed the other's socket and started its own).
exec {start_lock}>"$P/start.lock"
flock "$start_lock"
if ! engine_answers "unix://$SOCK"; then
  rm -f "$SOCK"
  # Serves until killed; its PID is kept so tools/engine-stop.sh ends exactly this process. It inherits no
  # file descriptor but stdio: a caller's (a `flock` around a test run) would otherwise be held as long as
  # the engine lives, and so would the lock.
  (
    for fd in /proc/"$BASHPID"/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
    exec nohup podman system service --time=0 "unix://$SOCK" >"$P/service.log" 2>&1
  ) &
  echo $! > "$P/service.pid"
  for _ in $(seq 1 100); do engine_answers "unix://$SOCK" && break; sleep 0.1; done
  engine_answers "unix://$SOCK" || die "podman API did not answer on $SOCK; see $P/service.log"
fi
exec {start_lock}>&-
echo "unix://$SOCK"
