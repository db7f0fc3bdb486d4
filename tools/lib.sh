# Shared helpers for tools/*.sh: step timing, cache location, clear failures.
# Sourced, never run.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The tools' Python scripts import the repository's modules (infra.engine_api), as after sourcing env.sh.
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
