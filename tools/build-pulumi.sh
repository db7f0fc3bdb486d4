#!/usr/bin/env bash
# Builds from Go modules, into $CACHE_DIR/<piece>-v<version>/, only when not built yet:
#   build-pulumi.sh engine       the Pulumi engine and the Python language host; prints the bin directory
#                                holding `pulumi` with its bundled plugins beside it
#   build-pulumi.sh kubernetes   the kubernetes resource plugin; prints the plugin's path
# With --check first, builds nothing: exit 0 (and the same line) when that piece is built, else 1.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/versions.env"
CHECK=""; [ "${1:-}" = --check ] && { CHECK=1; shift; }
PIECE=${1:?usage: build-pulumi.sh [--check] engine|kubernetes}
export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local

moddir() {  # moddir MODULE@VERSION: downloads one module and prints its read-only source directory
  (cd "$(mktemp -d)" && go mod download -json "$1") | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit("go mod download " + d["Path"] + "@" + d["Version"] + ": " + d["Error"]) if d.get("Error") else print(d["Dir"])'
}
cpmod() { local d; d=$(moddir "$1"); rm -rf "$2"; mkdir -p "$(dirname "$2")"; cp -r "$d" "$2"; chmod -R u+w "$2"; }

PULUMI_DIR=$CACHE_DIR/pulumi-v$PULUMI_VERSION
BIN=$PULUMI_DIR/bin
SRC=$CACHE_DIR/src
STAMP="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"

K8S=$CACHE_DIR/pulumi-resource-kubernetes-v$KUBERNETES_PLUGIN_VERSION
case "$PIECE" in
  engine)
    # A `pulumi` already on PATH at the pinned version is used instead, with its own langhost.
    existing=$(command -v pulumi 2>/dev/null || true)
    if [ -n "$existing" ] && [ "$(pulumi version 2>/dev/null)" = "v$PULUMI_VERSION" ] \
       && [ -x "$(dirname "$(readlink -f "$existing")")/pulumi-language-python" ]; then
      BIN=$(dirname "$(readlink -f "$existing")")
    fi
    built() { [ -x "$BIN/pulumi" ] && [ -x "$BIN/pulumi-language-python" ]; }
    OUT=$BIN ;;
  kubernetes) built() { [ -x "$K8S/pulumi-resource-kubernetes" ]; }; OUT=$K8S/pulumi-resource-kubernetes ;;
  *) die "unknown piece $PIECE: engine or kubernetes" ;;
esac
if [ -n "$CHECK" ]; then built || exit 1; echo "$OUT"; exit 0; fi
built && { echo "$OUT"; exit 0; }
need go "install Go >= 1.25 (Debian/upstream go toolchain)"

if [ "$PIECE" = engine ]; then
  # The repository layout is rebuilt from the two module zips so pkg's `replace sdk => ../sdk` holds.
  W=$SRC/pulumi-$PULUMI_VERSION
  cpmod "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION" "$W/pkg"
  cpmod "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" "$W/sdk"
  mkdir -p "$BIN.partial"
  (cd "$W/pkg" && go build -trimpath -tags osusergo,grpcnotrace -ldflags "-s -w $STAMP" \
     -o "$BIN.partial/pulumi" ./cmd/pulumi)
  # Executor script and dynamic-provider shim are bundled plugins: they must sit beside `pulumi`.
  install -m 0755 "$W/sdk/python/cmd/pulumi-language-python-exec" \
    "$W/sdk/python/dist/pulumi-resource-pulumi-python" "$BIN.partial/"
  # Python language host (see versions.env for why v$LANGHOST_SDK_VERSION).
  LH=$SRC/langhost-$LANGHOST_SDK_VERSION
  mkdir -p "$LH"
  (cd "$LH" && { [ -f go.mod ] || go mod init local.invalid/langhost >/dev/null 2>&1; } \
     && go get "github.com/pulumi/pulumi/sdk/v3@v$LANGHOST_SDK_VERSION" >/dev/null 2>&1 \
     && go build -trimpath -ldflags "-s -w $STAMP" -o "$BIN.partial/pulumi-language-python" \
          github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python)
  rm -rf "$BIN" && mv "$BIN.partial" "$BIN"
  rm -rf "$W" "$LH"
fi

# Kubernetes resource plugin.
if [ "$PIECE" = kubernetes ]; then
  W=$SRC/pulumi-kubernetes-$KUBERNETES_PLUGIN_VERSION
  cpmod "$KUBERNETES_PROVIDER_MODULE" "$W/provider"
  # Satisfies the provider's `replace .../sdk/v4 => ../sdk`.
  cpmod "github.com/pulumi/pulumi-kubernetes/sdk/v4@v$KUBERNETES_PLUGIN_VERSION" "$W/sdk"
  mkdir -p "$K8S.partial"
  (cd "$W/provider" \
     && VERSION=$KUBERNETES_PLUGIN_VERSION go generate ./cmd/pulumi-resource-kubernetes \
     && go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$KUBERNETES_PLUGIN_VERSION" \
          -o "$K8S.partial/pulumi-resource-kubernetes" ./cmd/pulumi-resource-kubernetes)
  rm -rf "$K8S" && mv "$K8S.partial" "$K8S"
  rm -rf "$W"
fi
echo "$OUT"
