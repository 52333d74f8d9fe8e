#!/bin/sh
# Runs inside the debootstrapped root: trim what a container does not need.
set -eu
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*
# haproxy is enabled by its package; only the LB host should run it.
systemctl disable haproxy.service >/dev/null 2>&1 || true
# Likewise prometheus: only the metrics host runs it.
systemctl disable prometheus.service >/dev/null 2>&1 || true
# Units that cannot work, or only slow boot, inside a container.
for unit in systemd-remount-fs.service systemd-udevd.service systemd-udev-trigger.service \
    getty.target console-getty.service systemd-logind.service apt-daily.timer \
    apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer dpkg-db-backup.timer; do
  systemctl mask "$unit" >/dev/null 2>&1 || true
done
echo "fleet-host" > /etc/hostname
mkdir -p /var/lib/fake-nvidia/allocations
