#!/bin/sh
# Run by tools/images.sh as root in a container of the Debian base image, without network: installs the
# .debs it brought in /build/debs (Debian's prometheus, prometheus-alertmanager, prometheus-pushgateway and
# what the base lacks for them) under one unprivileged user at a fixed uid/gid (the containers' and pods'
# user). One image, three commands: prometheus, prometheus-alertmanager, prometheus-pushgateway.
set -eu
MON_UID=990  # a system uid (under 1000): the packages' adduser --system accepts it
# Made before the packages, whose maintainer scripts then find it and make no user of their own.
groupadd --system --gid "$MON_UID" prometheus
useradd --system --uid "$MON_UID" --gid "$MON_UID" --home-dir /var/lib/prometheus --no-create-home \
  --shell /usr/sbin/nologin --comment "Prometheus daemon" prometheus
printf '%s\n' path-exclude=/usr/share/doc/* path-exclude=/usr/share/man/* path-exclude=/usr/share/info/* \
  path-exclude=/usr/share/locale/* path-include=/usr/share/doc/*/copyright > /etc/dpkg/dpkg.cfg.d/excludes
# No service started at install.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
DEBIAN_FRONTEND=noninteractive dpkg --force-confdef --force-confold --install /build/debs/*.deb
rm -f /usr/sbin/policy-rc.d
# The packages' default configs and state belong to a systemd host; the stacks give every container its own.
rm -rf /var/lib/prometheus/* /var/log/prometheus/* /var/cache/debconf/*-old /var/lib/dpkg/*-old
for d in /prometheus /alertmanager /pushgateway; do install -d -o prometheus -g prometheus -m 0750 "$d"; done
prometheus --version 2>&1 | head -n1
prometheus-alertmanager --version 2>&1 | head -n1
prometheus-pushgateway --version 2>&1 | head -n1
