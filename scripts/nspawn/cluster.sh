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
  local h up_pid
  # An `up` still booting (e.g. Molecule's background create when the run is interrupted) is stopped
  # first, so it cannot start a host after we removed everything.
  up_pid="$(cat "$NSPAWN_RUN/up.pid" 2>/dev/null || true)"
  if [[ -n "$up_pid" && "$up_pid" != "$$" ]] && kill -0 "$up_pid" 2>/dev/null; then
    log "stopping the running 'cluster.sh up' ($up_pid)"
    kill -TERM "$up_pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$NSPAWN_RUN/up.pid"
  for h in $(hosts); do "$HERE/stop.sh" "$h" & done
  wait || true
  "$HERE/network.sh" down
  rmdir "$NSPAWN_RUN" 2>/dev/null || true
}

up() {
  (($# > 0)) || die "usage: cluster.sh up NAME=ADDRESS..."
  local started=$SECONDS spec
  local pids=()
  mkdir -p "$NSPAWN_RUN"
  echo $$ >"$NSPAWN_RUN/up.pid"
  trap 'log "cluster up failed: tearing down"; down' ERR
  # shellcheck disable=SC2317
  trap 'log "interrupted: tearing down"; ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null; wait; down; exit 130' INT TERM
  # In the background + wait, so a signal reaches the trap at once (bash defers traps during a
  # foreground child; the first build runs debootstrap for minutes).
  "$HERE/rootfs.sh" >/dev/null &
  pids+=($!)
  wait "${pids[0]}"
  pids=()
  "$HERE/network.sh" up
  for spec in "$@"; do
    [[ "$spec" == *=* ]] || die "bad host spec '$spec' (want NAME=ADDRESS)"
    "$HERE/boot.sh" "${spec%%=*}" "${spec#*=}" &
    pids+=($!)
  done
  local failed=0 p
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  ((failed == 0)) || false
  trap - ERR INT TERM
  rm -f "$NSPAWN_RUN/up.pid"
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
