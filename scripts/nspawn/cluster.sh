#!/usr/bin/env bash
# A set of booted Debian 12 hosts on one bridge: the stand-in VMs for Molecule and tests/deploy.
#   scripts/nspawn/cluster.sh up NAME=ADDRESS...   build/reuse the rootfs, bridge + NAT, boot every host
#   scripts/nspawn/cluster.sh down                 stop every host under $NSPAWN_RUN, remove bridge/NAT
#   scripts/nspawn/cluster.sh pid NAME             print NAME's systemd PID (for nsenter / Ansible)
#   scripts/nspawn/cluster.sh exec NAME CMD...     run CMD inside NAME
#   scripts/nspawn/cluster.sh status               list hosts and their system state
# `up` tears everything down again if any step fails or is interrupted; `down` is idempotent.
set -Eeuo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
require_root

hosts() {
  [[ -d "$NSPAWN_RUN" ]] || return 0
  find "$NSPAWN_RUN" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort
}

leader() {
  local f="$NSPAWN_RUN/$1/leader.pid"
  [[ -f "$f" ]] || die "$1 is not running"
  cat "$f"
}

down() {
  local h
  for h in $(hosts); do "$HERE/stop.sh" "$h" & done
  wait || true
  "$HERE/network.sh" down
  rmdir "$NSPAWN_RUN" 2>/dev/null || true
}

up() {
  (($# > 0)) || die "usage: cluster.sh up NAME=ADDRESS..."
  local started=$SECONDS spec
  trap 'log "cluster up failed: tearing down"; down' ERR
  trap 'log "interrupted: tearing down"; down; exit 130' INT TERM
  "$HERE/rootfs.sh" >/dev/null
  "$HERE/network.sh" up
  local pids=()
  for spec in "$@"; do
    [[ "$spec" == *=* ]] || die "bad host spec '$spec' (want NAME=ADDRESS)"
    "$HERE/boot.sh" "${spec%%=*}" "${spec#*=}" &
    pids+=($!)
  done
  local failed=0 p
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  ((failed == 0)) || false
  trap - ERR INT TERM
  log "cluster up in $((SECONDS - started)) s: $*"
}

status() {
  local h
  for h in $(hosts); do
    if [[ -f "$NSPAWN_RUN/$h/leader.pid" ]]; then
      printf '%s\t%s\t%s\n' "$h" "$(cat "$NSPAWN_RUN/$h/leader.pid")" \
        "$(nsenter -t "$(cat "$NSPAWN_RUN/$h/leader.pid")" -a systemctl is-system-running 2>/dev/null || true)"
    else
      printf '%s\t-\tstopped\n' "$h"
    fi
  done
}

cmd="${1:-}"
shift || true
case "$cmd" in
  up) up "$@" ;;
  down) down ;;
  pid) leader "${1:?usage: cluster.sh pid NAME}" ;;
  exec)
    name="${1:?usage: cluster.sh exec NAME CMD...}"
    shift
    exec nsenter -t "$(leader "$name")" -a "$@"
    ;;
  status) status ;;
  *) die "usage: $0 up NAME=ADDRESS... | down | pid NAME | exec NAME CMD... | status" ;;
esac
