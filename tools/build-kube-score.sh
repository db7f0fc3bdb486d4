#!/usr/bin/env bash
# Builds kube-score (a static checker of Kubernetes objects) from its Go module, once per version, into
# $CACHE_DIR/kube-score-<v>/. Prints "KUBE_SCORE_BIN=DIR".
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/versions.env"
need go "install Go >= 1.25"
export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local

OUT=$CACHE_DIR/kube-score-$KUBE_SCORE_VERSION
if [ ! -x "$OUT/kube-score" ]; then
  SRC=$CACHE_DIR/src/kube-score-$KUBE_SCORE_VERSION
  rm -rf "$SRC" "$OUT.partial" && mkdir -p "$SRC" "$OUT.partial" && cd "$SRC"
  go mod init local.invalid/kube-score >/dev/null 2>&1
  go get "github.com/zegl/kube-score@$KUBE_SCORE_VERSION" >/dev/null 2>&1
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$KUBE_SCORE_VERSION" \
    -o "$OUT.partial/kube-score" github.com/zegl/kube-score/cmd/kube-score
  rm -rf "$OUT" && mv "$OUT.partial" "$OUT" && cd / && rm -rf "$SRC"
fi
echo "KUBE_SCORE_BIN=$OUT"
