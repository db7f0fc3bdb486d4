#!/usr/bin/env bash
# Builds the Versity S3 gateway (a real S3-compatible server that serves a folder) from its Go module
# into $CACHE_DIR/versitygw-<version>/, only when not built yet. The backup tests start it on loopback
# (the test bed's S3 server). Prints the binary's path. With --check, builds nothing: exit 1 if it is missing.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/versions.env"
need go "install Go >= 1.25 (Debian/upstream go toolchain)"
export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local

DIR=$CACHE_DIR/versitygw-$VERSITYGW_VERSION
if [ "${1:-}" = --check ]; then [ -x "$DIR/versitygw" ] && echo "$DIR/versitygw"; exit; fi
if [ ! -x "$DIR/versitygw" ]; then
  rm -rf "$DIR.partial" && mkdir -p "$DIR.partial"
  # `go install` into a folder of its own: GOBIN set, no module of ours involved.
  GOBIN=$DIR.partial go install -trimpath -ldflags "-s -w" \
    "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  rm -rf "$DIR" && mv "$DIR.partial" "$DIR"
fi
echo "$DIR/versitygw"
