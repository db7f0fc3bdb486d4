#!/bin/sh
# Run by tools/images.sh as root in a container of the Debian base image, without network: installs the
# .debs it brought in /build/debs (PostgreSQL and what the base lacks for it), the `postgres` user at a
# fixed uid/gid (the pods' runAsUser/fsGroup) and the entrypoint. Leaves no cluster, log or key behind.
set -eu
PG_UID=999
groupadd --system --gid "$PG_UID" postgres
useradd --system --uid "$PG_UID" --gid "$PG_UID" --home-dir /var/lib/postgresql --no-create-home \
  --shell /usr/sbin/nologin --comment "PostgreSQL administrator" postgres
# No documentation or translations (the server speaks English in the pods' logs): some 60 MB less.
printf '%s\n' path-exclude=/usr/share/doc/* path-exclude=/usr/share/man/* path-exclude=/usr/share/info/* \
  path-exclude=/usr/share/locale/* path-include=/usr/share/doc/*/copyright > /etc/dpkg/dpkg.cfg.d/excludes
# No cluster made at install (the entrypoint makes one at the first start), no service started.
mkdir -p /etc/postgresql-common
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 dpkg --force-confdef --force-confold --install /build/debs/*.deb
rm -f /usr/sbin/policy-rc.d
# The snakeoil key ssl-cert made would be the same in every container of the image: the server has TLS off.
rm -f /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem
rm -rf /var/lib/postgresql /etc/postgresql/*/ /var/log/postgresql/* /var/cache/debconf/*-old /var/lib/dpkg/*-old
install -d -o postgres -g postgres -m 0755 /var/lib/postgresql
install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
install -d -o postgres -g postgres -m 2775 /run/postgresql
install -m 0755 /build/entrypoint.sh /usr/local/bin/postgres-entrypoint
PG_BIN=$(echo /usr/lib/postgresql/*/bin)
[ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/pg_isready" ] || { echo "no PostgreSQL server in $PG_BIN" >&2; exit 1; }
"$PG_BIN/postgres" --version
