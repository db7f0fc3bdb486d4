#!/usr/bin/env bash
# Builds etcd and kube-apiserver from Go modules into $CACHE_DIR/kube-<version>/, once per version.
# Prints that directory.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/versions.env"
need go "install Go >= 1.25"
export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local

OUT=$CACHE_DIR/kube-$KUBE_APISERVER_VERSION-etcd-$ETCD_VERSION
if [ ! -x "$OUT/kube-apiserver" ] || [ ! -x "$OUT/etcd" ]; then
  SRC=$CACHE_DIR/src/kube-$KUBE_APISERVER_VERSION
  rm -rf "$SRC" "$OUT.partial" && mkdir -p "$SRC" "$OUT.partial"
  cd "$SRC"
  go mod init local.invalid/kubetools >/dev/null 2>&1
  # etcd's server module has main.go at its root; its own replaces point at modules published at the
  # same tag, so a plain requirement works.
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1
  go build -trimpath -ldflags "-s -w" -o "$OUT.partial/etcd" go.etcd.io/etcd/server/v3
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging: map each
  # to the published k8s.io/<name> v0.<minor>.<patch>, and keep its GODEBUG defaults.
  KGOMOD=$( (cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@$KUBE_APISERVER_VERSION") \
            | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  STAGING=v0.${KUBE_APISERVER_VERSION#v1.}
  for m in $(sed -n 's#^\t\(k8s\.io/[a-z0-9-]*\) v0\.0\.0$#\1#p' "$KGOMOD"); do
    go mod edit "-replace=$m=$m@$STAGING"
  done
  GD=$(sed -n 's/^godebug default=\(go[0-9.]*\)$/\1/p' "$KGOMOD")
  [ -n "$GD" ] && go mod edit "-godebug=default=$GD"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_APISERVER_VERSION" >/dev/null 2>&1
  MINOR=$(echo "$KUBE_APISERVER_VERSION" | cut -d. -f2)
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_APISERVER_VERSION \
    -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR" \
    -o "$OUT.partial/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  rm -rf "$OUT" && mv "$OUT.partial" "$OUT"
  cd / && rm -rf "$SRC"
fi
echo "$OUT"
