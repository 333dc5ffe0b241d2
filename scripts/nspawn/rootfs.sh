#!/usr/bin/env bash
# Build (once) and print the path of a Debian 12 root file system for booted systemd-nspawn hosts.
#   scripts/nspawn/rootfs.sh          -> prints the rootfs directory (lower layer for the overlays)
# Cache: $NSPAWN_CACHE/debian-<suite>-<key>.tar.{zst,gz} (the durable artifact CI can cache) and the
# unpacked directory next to it. The key hashes the package lists, so changing them rebuilds.
set -Eeuo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
require_root

DIR="$(rootfs_dir)"
TARBALL="$(rootfs_tarball)"
mkdir -p "$NSPAWN_CACHE"
exec 9>"$NSPAWN_CACHE/.rootfs.lock"
flock 9   # concurrent runs wait for one builder

# Drop root file systems of older package lists, unless a running host still uses one as its lower layer.
prune_old() {
  local old
  for old in "$NSPAWN_CACHE"/debian-"$NSPAWN_SUITE"-*; do
    [[ -e "$old" ]] || continue
    [[ "$old" == "$DIR" || "$old" == "$TARBALL" || "$old" == *.tmp.* ]] && continue
    grep -qF "lowerdir=${old%.tar.*}," /proc/mounts || rm -rf "$old"
  done
}

if [[ -f "$DIR/.sumflow-rootfs-complete" ]]; then
  prune_old
  echo "$DIR"
  exit 0
fi

TMP="$DIR.tmp.$$"
cleanup() {
  # Only a half-built tree is removed; a finished one was renamed away already.
  for m in proc sys dev/pts dev; do mountpoint -q "$TMP/$m" 2>/dev/null && umount -l "$TMP/$m"; done
  rm -rf "$TMP" "$TARBALL.tmp.$$"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$DIR"

decompress() { case "$1" in *.zst) zstd -dc -- "$1" ;; *) gzip -dc -- "$1" ;; esac; }
compress() { case "$1" in *.zst) zstd -q -T0 -3 ;; *) gzip -1 ;; esac; }

if [[ -f "$TARBALL" ]]; then
  log "unpacking cached rootfs $TARBALL"
  mkdir -p "$TMP"
  decompress "$TARBALL" | tar -C "$TMP" --numeric-owner --xattrs --xattrs-include='*' -xf -
else
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  started=$SECONDS
  log "debootstrap $NSPAWN_SUITE (minbase + $NSPAWN_BASE_PACKAGES) from $NSPAWN_MIRROR"
  debootstrap --variant=minbase --include="$NSPAWN_BASE_PACKAGES" \
    "$NSPAWN_SUITE" "$TMP" "$NSPAWN_MIRROR" >"$NSPAWN_CACHE/debootstrap.log" 2>&1 ||
    { tail -n 30 "$NSPAWN_CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
  if [[ -n "$NSPAWN_EXTRA_PACKAGES" ]]; then
    log "installing extra packages: $NSPAWN_EXTRA_PACKAGES"
    # A non-booted nspawn run gives apt a proper /proc, /dev and resolv.conf (Java's postinst needs them).
    # shellcheck disable=SC2086
    systemd-nspawn -q -D "$TMP" --register=no --keep-unit --resolv-conf=copy-host --pipe \
      env DEBIAN_FRONTEND=noninteractive sh -c \
      "apt-get update -q && apt-get install -y -q --no-install-recommends $NSPAWN_EXTRA_PACKAGES && apt-get clean" \
      >>"$NSPAWN_CACHE/debootstrap.log" 2>&1 ||
      { tail -n 30 "$NSPAWN_CACHE/debootstrap.log" >&2; die "installing extra packages failed"; }
  fi
  # Each container gets its own machine id at boot (empty file = generate one), its own hostname and
  # a static address written by boot.sh. networkd brings host0 up.
  : >"$TMP/etc/machine-id"
  rm -f "$TMP/var/lib/dbus/machine-id"
  ln -s /etc/machine-id "$TMP/var/lib/dbus/machine-id"
  : >"$TMP/etc/hostname"
  systemd-nspawn -q -D "$TMP" --register=no --keep-unit --pipe systemctl enable systemd-networkd.service \
    >>"$NSPAWN_CACHE/debootstrap.log" 2>&1
  rm -rf "$TMP"/var/cache/apt/archives/*.deb "$TMP"/var/log/*.log
  log "debootstrap done in $((SECONDS - started)) s; packing $TARBALL"
  tar -C "$TMP" --numeric-owner --xattrs --xattrs-include='*' -cf - . | compress "$TARBALL" >"$TARBALL.tmp.$$"
  mv "$TARBALL.tmp.$$" "$TARBALL"
fi
touch "$TMP/.sumflow-rootfs-complete"
mv "$TMP" "$DIR"
prune_old
log "rootfs ready: $DIR ($(du -sh "$DIR" | cut -f1))"
echo "$DIR"
