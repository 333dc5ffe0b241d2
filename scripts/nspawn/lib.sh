# shellcheck shell=bash
# Shared settings for the systemd-nspawn test hosts (sourced by the other scripts in this folder).
# Everything can be overridden from the environment; defaults match molecule/default.

SUMFLOW_CACHE="${SUMFLOW_CACHE:-$HOME/.cache/sumflow}"
NSPAWN_CACHE="${NSPAWN_CACHE:-$SUMFLOW_CACHE/nspawn}"
# Per-run state (overlays, pid files, logs). Kept on disk, not tmpfs: Kafka and Java live in the overlays.
NSPAWN_RUN="${NSPAWN_RUN:-/var/tmp/sumflow-nspawn}"
NSPAWN_BRIDGE="${NSPAWN_BRIDGE:-sfmol0}"
NSPAWN_PREFIX="${NSPAWN_PREFIX:-10.231.0}"   # /24; the host side of the bridge is .1
# A host's own cgroup (under /sys/fs/cgroup/{systemd,unified}/): named after the bridge too, so two sets
# of hosts with the same names (their own NSPAWN_BRIDGE) never stop each other's processes.
host_cgroup() { printf 'nspawn-%s-%s' "$NSPAWN_BRIDGE" "$1"; }
NSPAWN_SUITE="${NSPAWN_SUITE:-bookworm}"
NSPAWN_MIRROR="${NSPAWN_MIRROR:-http://deb.debian.org/debian}"
# Packages baked into the cached root file system. The base set (debootstrap --include) is what
# booting and Ansible need; the extra set (apt-get inside the new root) is what the roles install
# anyway, baked in only so their apt tasks are no-ops in CI.
NSPAWN_BASE_PACKAGES="${NSPAWN_BASE_PACKAGES:-systemd,systemd-sysv,dbus,python3,python3-apt,iproute2,ca-certificates,procps,acl,sudo}"
NSPAWN_EXTRA_PACKAGES="${NSPAWN_EXTRA_PACKAGES:-openjdk-17-jre-headless python3-venv}"
NSPAWN_BOOT_TIMEOUT="${NSPAWN_BOOT_TIMEOUT:-240}"  # generous: CI shares 2 cores

log() { printf '[nspawn %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (systemd-nspawn, mounts, bridge, nft)"; }

# The cache key changes whenever the package list or suite changes, so a stale tarball is never reused.
rootfs_key() {
  printf '%s|%s|%s|%s' "$NSPAWN_SUITE" "$NSPAWN_BASE_PACKAGES" "$NSPAWN_EXTRA_PACKAGES" v1 | sha256sum | cut -c1-12
}
# zstd when available (fast), gzip otherwise (always there).
rootfs_tarball() {
  if command -v zstd >/dev/null; then echo "$NSPAWN_CACHE/debian-$NSPAWN_SUITE-$(rootfs_key).tar.zst"
  else echo "$NSPAWN_CACHE/debian-$NSPAWN_SUITE-$(rootfs_key).tar.gz"; fi
}
rootfs_dir() { echo "$NSPAWN_CACHE/debian-$NSPAWN_SUITE-$(rootfs_key)"; }
