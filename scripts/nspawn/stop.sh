#!/usr/bin/env bash
# Stop one nspawn host and remove every trace of it (process, overlay, cgroups, state dir).
#   scripts/nspawn/stop.sh NAME
# Safe to run repeatedly and on a half-started host.
set -Euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
require_root

NAME="${1:?usage: stop.sh NAME}"
D="$NSPAWN_RUN/$NAME"
CGROUP="$(host_cgroup "$NAME")"

# Every process of the host, in all nested cgroups its systemd created.
cgroup_pids() {
  find "/sys/fs/cgroup/systemd/$CGROUP" "/sys/fs/cgroup/unified/$CGROUP" -name cgroup.procs \
    -exec cat {} + 2>/dev/null | sort -u || true
}

if [[ -f "$D/nspawn.pid" ]]; then
  pid="$(cat "$D/nspawn.pid")"
  # SIGTERM asks systemd-nspawn for a clean shutdown of the container (a couple of seconds).
  if kill -0 "$pid" 2>/dev/null && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == systemd-nspawn ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
fi
# Whatever is still in the host's cgroup (a hung shutdown, a half-started boot) is killed.
for _ in 1 2 3; do
  pids="$(cgroup_pids)"
  [[ -z "$pids" ]] && break
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  sleep 0.5
done
if mountpoint -q "$D/merged" 2>/dev/null; then
  umount "$D/merged" 2>/dev/null || umount -l "$D/merged"
fi
for h in systemd unified; do
  [[ -d "/sys/fs/cgroup/$h/$CGROUP" ]] &&
    find "/sys/fs/cgroup/$h/$CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null
done
rm -rf "$D"
log "$NAME stopped and removed"
