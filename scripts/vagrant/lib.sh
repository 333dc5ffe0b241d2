# shellcheck shell=bash
# Shared settings for the real-VM scripts (sourced by the other scripts in this folder): the box
# name, caches, and the libvirt daemons this machine has no init system to start.

SUMFLOW_CACHE="${SUMFLOW_CACHE:-$HOME/.cache/sumflow}"
VAGRANT_CACHE="$SUMFLOW_CACHE"
SUMFLOW_BOX_NAME="${SUMFLOW_BOX_NAME:-sumflow/debian12}"
BOX_SUITE="${BOX_SUITE:-bookworm}"
BOX_MIRROR="${BOX_MIRROR:-http://deb.debian.org/debian}"
LIBVIRT_POOL="${LIBVIRT_POOL:-default}"
LIBVIRT_POOL_DIR="${LIBVIRT_POOL_DIR:-/var/lib/libvirt/images}"
# Kernels of the built boxes: outside the Vagrant home (under /root), where libvirt's QEMU user reads them.
BOX_KERNEL_ROOT="${BOX_KERNEL_ROOT:-/var/lib/libvirt/boot/sumflow}"

log() { printf '[vagrant %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
require_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, libvirt)"; }

vagrant_home() { echo "${VAGRANT_HOME:-$HOME/.vagrant.d}"; }
kernel_dir() { echo "$BOX_KERNEL_ROOT/$1"; }
vagrant_insecure_key() {
  local gem
  gem="$(gem contents vagrant 2>/dev/null | grep -m1 '/keys/vagrant.pub$' || true)"
  [[ -n "$gem" ]] || gem="$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -n 1)"
  [[ -f "$gem" ]] || die "Vagrant's insecure public key not found (is vagrant installed?)"
  echo "$gem"
}

# Start libvirt's daemons when no init system did (this machine's PID 1 is not systemd), and make
# sure the storage pool Vagrant uses exists. Prints nothing; records what it started in
# $LIBVIRT_STARTED_FILE so libvirt_down stops only that.
LIBVIRT_STARTED_FILE="${LIBVIRT_STARTED_FILE:-/run/sumflow-libvirt-started}"
libvirt_up() {
  if [[ -c /dev/kvm ]] && getent group kvm >/dev/null; then
    # Without this libvirt re-probes KVM on every call and stalls.
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  fi
  local d
  for d in virtlogd virtlockd libvirtd; do
    if ! pgrep -x "$d" >/dev/null; then
      "$d" -d
      echo "$d" >>"$LIBVIRT_STARTED_FILE"
    fi
    # Each daemon must answer on its socket before the next one (or a VM) needs it.
    local sock="/run/libvirt/$d-sock"
    [[ "$d" == libvirtd ]] && sock=/run/libvirt/libvirt-sock
    for _ in $(seq 50); do [[ -S "$sock" ]] && pgrep -x "$d" >/dev/null && break; sleep 0.2; done
    pgrep -x "$d" >/dev/null || die "$d did not start"
  done
  for _ in $(seq 50); do virsh -q version >/dev/null 2>&1 && break; sleep 0.2; done
  virsh -q version >/dev/null 2>&1 || die "libvirtd does not answer"
  if ! virsh -q pool-info "$LIBVIRT_POOL" >/dev/null 2>&1; then
    virsh -q pool-define-as "$LIBVIRT_POOL" dir --target "$LIBVIRT_POOL_DIR" >/dev/null
    virsh -q pool-build "$LIBVIRT_POOL" >/dev/null
  fi
  # grep reads all of it: with -q, virsh could die of SIGPIPE and pipefail would call a running pool stopped.
  pool_running() { virsh -q pool-info "$LIBVIRT_POOL" 2>/dev/null | grep '^State: *running' >/dev/null; }
  # A restarted libvirtd may still be re-activating the pool (up to half a minute and more on a busy
  # machine): "already active" is fine.
  local _
  for _ in $(seq 240); do
    pool_running && break
    virsh -q pool-start "$LIBVIRT_POOL" >/dev/null 2>&1 || true
    sleep 0.5
  done
  pool_running || die "storage pool $LIBVIRT_POOL is not running"
}

# Stop the daemons libvirt_up started (none that were already running).
libvirt_down() {
  [[ -f "$LIBVIRT_STARTED_FILE" ]] || return 0
  local d
  for d in $(tac "$LIBVIRT_STARTED_FILE"); do
    pkill -x "$d" 2>/dev/null || true
    for _ in $(seq 50); do pgrep -x "$d" >/dev/null || break; sleep 0.2; done
  done
  rm -f "$LIBVIRT_STARTED_FILE"
}
