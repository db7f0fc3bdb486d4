# Shared helpers for tools/*.sh: step timing, cache location, clear failures.
# Sourced, never run.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The tools' Python scripts import the repository's modules (infra.clients.engine_api), as after sourcing env.sh.
case ":${PYTHONPATH:-}:" in *":$REPO_ROOT:"*) ;; *) export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" ;; esac
# Slow builds are cached outside the repo, keyed by version, so a fresh clone reuses them.
CACHE_DIR=${TOOLCHAIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-envvars-toolchain}
# Everything a run needs at run time (PATH, DOCKER_HOST, Pulumi settings) is written here and sourced.
ENV_FILE=$REPO_ROOT/.toolchain/env.sh
mkdir -p "$CACHE_DIR" "$REPO_ROOT/.toolchain"

_ms() { echo $(( $(date +%s%N) / 1000000 )); }
_T0=${_T0:-$(_ms)}
export _T0
_step_start=0
_secs() { printf '%d.%d' $(( $1 / 1000 )) $(( ($1 % 1000) / 100 )); }
step() {  # step "description": prints the step with the elapsed time since the toolchain run began
  _step_start=$(_ms)
  printf '==> [+%ss] %s\n' "$(_secs $(( _step_start - _T0 )))" "$*"
}
done_step() {
  printf '    done in %ss%s\n' "$(_secs $(( $(_ms) - _step_start )))" "${1:+ ($1)}"
}
die() { echo "ERROR: $*" >&2; exit 1; }
need() {  # need CMD "how to get it"
  command -v "$1" >/dev/null 2>&1 || die "missing prerequisite '$1': $2"
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {  # apt_install PKG...: installs only the missing ones
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  need apt-get "install Debian packages ${missing[*]} by hand on a non-Debian system"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}
apt_install_tools() {  # apt_install_tools PKG...: packages wanted for their command-line tools only
  # Their daemons must not run on the developer's machine (a Prometheus on :9090 would also take a port
  # the stacks may publish). Their postinst starts them through invoke-rc.d (SysV) or deb-systemd-invoke
  # (systemd), both of which ask /usr/sbin/policy-rc.d: one refusing every start (exit 101) is in place
  # for the install unless the host has its own, and what the postinst enabled for boot is disabled.
  # Recommends (prometheus recommends prometheus-node-exporter, another daemon) are not installed.
  local missing=() p policy=/usr/sbin/policy-rc.d ours="" rc=0
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  need apt-get "install Debian packages ${missing[*]} by hand on a non-Debian system"
  if [ ! -e "$policy" ]; then
    # removed however the install ends, an interruption too (later installs must start their daemons)
    trap "as_root rm -f $policy" EXIT
    as_root sh -c "printf '#!/bin/sh\\nexit 101\\n' > $policy && chmod 0755 $policy"
    ours=1
  fi
  as_root apt-get update -qq || rc=$?
  [ $rc -eq 0 ] && { DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null || rc=$?; }
  [ -n "$ours" ] && { as_root rm -f "$policy"; trap - EXIT; }
  [ $rc -eq 0 ] || die "apt-get install ${missing[*]} failed (exit $rc)"
  for p in "${missing[@]}"; do
    # systemctl edits the links without a running systemd; without systemctl, the link is all there is
    if command -v systemctl >/dev/null 2>&1; then as_root systemctl disable --quiet "$p.service" >/dev/null 2>&1 || true
    else as_root rm -f "/etc/systemd/system/multi-user.target.wants/$p.service"; fi
    [ -x "/etc/init.d/$p" ] && { as_root update-rc.d "$p" disable >/dev/null 2>&1 || true; }
  done
  return 0
}
