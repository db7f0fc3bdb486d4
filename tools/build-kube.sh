#!/usr/bin/env bash
# Builds the Kubernetes pieces from Go modules, each once per version, into $CACHE_DIR:
#   api:  kube-<v>-etcd-<v>/    etcd, kube-apiserver (the prod stack's API-server tests and the cluster)
#   node: kube-node-<v>/        kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl
#         coredns-<v>/          the cluster's DNS (its own module: its client libraries differ from kubelet's)
#         crictl-<v>/           for `cluster.sh down` to stop pods through the CRI
#         pause-<rev>/          the sandbox's PID 1 (no registry here gives registry.k8s.io/pause)
# build-kube.sh [--check] api|node|all (default all). Prints one line per directory, "NAME=DIR", the API
# server's last: `tail -n1` keeps working for it. With --check, builds nothing: exit 1 if one is missing.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/versions.env"
CHECK=""; [ "${1:-}" = --check ] && { CHECK=1; shift; }
PART=${1:-all}
case "$PART" in api|node|all) ;; *) die "usage: build-kube.sh [--check] api|node|all" ;; esac
[ -n "$CHECK" ] || need go "install Go >= 1.25"
export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local

kube_module() {  # kube_module CMD... : in a fresh dir, a module requiring k8s.io/kubernetes' commands
  go mod init local.invalid/kubetools >/dev/null 2>&1
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging: map each
  # to the published k8s.io/<name> v0.<minor>.<patch>, and keep its GODEBUG defaults.
  local kgomod m gd
  kgomod=$( (cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION") \
            | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  for m in $(sed -n 's#^\t\(k8s\.io/[a-z0-9-]*\) v0\.0\.0$#\1#p' "$kgomod"); do
    go mod edit "-replace=$m=$m@v0.${KUBE_VERSION#v1.}"
  done
  gd=$(sed -n 's/^godebug default=\(go[0-9.]*\)$/\1/p' "$kgomod")
  [ -n "$gd" ] && go mod edit "-godebug=default=$gd"
  go get $(for c in "$@"; do echo "k8s.io/kubernetes/cmd/$c@$KUBE_VERSION"; done) >/dev/null 2>&1
}
kube_ldflags() {
  echo "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
    -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
}
fresh() {  # fresh NAME : an empty source dir and an empty OUT.partial; cd into the source dir
  SRC=$CACHE_DIR/src/$1
  rm -rf "$SRC" "$OUT.partial" && mkdir -p "$SRC" "$OUT.partial" && cd "$SRC"
}
finish() { rm -rf "$OUT" && mv "$OUT.partial" "$OUT" && cd / && rm -rf "$SRC"; }

go_module_cmd() {  # go_module_cmd NAME MODULE@VERSION PACKAGE : a static binary from a published module
  fresh "$1"
  go mod init "local.invalid/$1" >/dev/null 2>&1
  go get "$2" >/dev/null 2>&1
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT.partial/$1" "$3"
  finish
}

# piece DIR FILE...: whether to build DIR now (its files are missing and this is no --check run)
piece() {
  local dir=$1 f; shift
  for f in "$@"; do
    [ -x "$dir/$f" ] && continue
    [ -n "$CHECK" ] && exit 1
    return 0
  done
  return 1
}

if [ "$PART" != api ]; then
OUT=$CACHE_DIR/kube-node-$KUBE_VERSION
NODE_CMDS="kubelet kube-controller-manager kube-scheduler kube-proxy kubectl"
# shellcheck disable=SC2086
if piece "$OUT" $NODE_CMDS; then
  fresh "kube-node-$KUBE_VERSION"
  kube_module $NODE_CMDS
  go build -trimpath -ldflags "$(kube_ldflags)" -o "$OUT.partial/" $(for c in $NODE_CMDS; do echo "k8s.io/kubernetes/cmd/$c"; done)
  finish
fi
echo "KUBE_NODE_BIN=$OUT"

OUT=$CACHE_DIR/coredns-$COREDNS_VERSION
! piece "$OUT" coredns || go_module_cmd coredns "github.com/coredns/coredns@$COREDNS_VERSION" github.com/coredns/coredns
echo "COREDNS_BIN=$OUT"

OUT=$CACHE_DIR/crictl-$CRICTL_VERSION
! piece "$OUT" crictl || go_module_cmd crictl "sigs.k8s.io/cri-tools@$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
echo "CRICTL_BIN=$OUT"

OUT=$CACHE_DIR/pause-$PAUSE_REVISION
if piece "$OUT" pause; then
  fresh pause
  go mod init local.invalid/pause >/dev/null 2>&1
  cp "$REPO_ROOT/tools/cluster/pause.go" main.go
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT.partial/pause" .
  finish
fi
echo "PAUSE_BIN=$OUT"
fi

[ "$PART" = node ] && exit 0
OUT=$CACHE_DIR/kube-$KUBE_VERSION-etcd-$ETCD_VERSION
if piece "$OUT" kube-apiserver etcd; then
  fresh "kube-$KUBE_VERSION"
  # etcd's server module has main.go at its root; its own replaces point at modules published at the
  # same tag, so a plain requirement works.
  go mod init local.invalid/etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1
  go build -trimpath -ldflags "-s -w" -o "$OUT.partial/etcd" go.etcd.io/etcd/server/v3
  rm go.mod go.sum
  kube_module kube-apiserver
  go build -trimpath -ldflags "$(kube_ldflags)" -o "$OUT.partial/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  finish
fi
echo "KUBE_TEST_BIN=$OUT"
