#!/usr/bin/env bash
# Boot one Debian 12 host with systemd as PID 1 under systemd-nspawn, on the bridge, with a static address.
#   scripts/nspawn/boot.sh NAME ADDRESS      e.g. boot.sh kafka1 10.231.0.11
# Needs the bridge (network.sh up) and the rootfs (rootfs.sh). Leaves behind, under $NSPAWN_RUN/NAME/:
#   nspawn.pid   the systemd-nspawn process (SIGTERM = clean shutdown)
#   leader.pid   the container's systemd (target for `nsenter -t PID -a` and ansible_nsenter_pid)
#   console.log  the boot console
# On any failure the host is stopped again (stop.sh) before exiting non-zero.
set -Eeuo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
require_root

NAME="${1:?usage: boot.sh NAME ADDRESS}"
ADDR="${2:?usage: boot.sh NAME ADDRESS}"
[[ "$NAME" =~ ^[a-z][a-z0-9-]{0,30}$ ]] || die "bad host name: $NAME"
ROOTFS="$(rootfs_dir)"
[[ -f "$ROOTFS/.sumflow-rootfs-complete" ]] || die "no rootfs at $ROOTFS (run rootfs.sh first)"
ip link show dev "$NSPAWN_BRIDGE" >/dev/null 2>&1 || die "bridge $NSPAWN_BRIDGE missing (run network.sh up)"

D="$NSPAWN_RUN/$NAME"
[[ -e "$D/nspawn.pid" ]] && die "$NAME already running (stop.sh $NAME first)"
trap '"$HERE/stop.sh" "$NAME" || true' ERR
trap '"$HERE/stop.sh" "$NAME" || true; exit 130' INT TERM

mkdir -p "$D/upper" "$D/work" "$D/merged"
mount -t overlay "sumflow-$NAME" -o "lowerdir=$ROOTFS,upperdir=$D/upper,workdir=$D/work" "$D/merged"

M="$D/merged"
echo "$NAME" >"$M/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost ip6-localhost ip6-loopback\n' "$NAME" >"$M/etc/hosts"
# The name matters: a lower-sorting file beats systemd's built-in DHCP file for host0.
cat >"$M/etc/systemd/network/80-container-host0.network" <<NET
[Match]
Virtualization=container
Name=host0

[Network]
Address=$ADDR/24
Gateway=$NSPAWN_PREFIX.1
LinkLocalAddressing=no
IPv6AcceptRA=no
NET

# Own cgroups, so each host's systemd gets its own tree (the machine's PID 1 is not systemd).
CGROUP="$(host_cgroup "$NAME")"
for h in systemd unified; do mkdir -p "/sys/fs/cgroup/$h/$CGROUP"; done
setsid bash -c '
  for h in systemd unified; do echo $$ >"/sys/fs/cgroup/$h/$4/cgroup.procs"; done
  exec systemd-nspawn -q -D "$2" -M "$1" -b --register=no --keep-unit --console=passive \
    --network-bridge="$3" --resolv-conf=copy-host
' nspawn-boot "$NAME" "$M" "$NSPAWN_BRIDGE" "$CGROUP" </dev/null >"$D/console.log" 2>&1 &
echo $! >"$D/nspawn.pid"
NSPAWN_PID=$!

# The container's systemd is the child of systemd-nspawn whose command became `systemd`.
deadline=$((SECONDS + NSPAWN_BOOT_TIMEOUT))
leader=""
while [[ -z "$leader" ]]; do
  kill -0 "$NSPAWN_PID" 2>/dev/null || { tail -n 20 "$D/console.log" >&2; die "$NAME: systemd-nspawn exited"; }
  ((SECONDS < deadline)) || die "$NAME: no systemd inside after ${NSPAWN_BOOT_TIMEOUT}s"
  for c in $(pgrep -P "$NSPAWN_PID" || true); do
    [[ "$(cat "/proc/$c/comm" 2>/dev/null)" == systemd ]] && leader=$c
  done
  [[ -n "$leader" ]] || sleep 0.2
done
echo "$leader" >"$D/leader.pid"

state=""
while :; do
  state="$(nsenter -t "$leader" -a systemctl is-system-running 2>/dev/null || true)"
  case "$state" in running | degraded) break ;; esac
  ((SECONDS < deadline)) || die "$NAME: system state '$state' after ${NSPAWN_BOOT_TIMEOUT}s"
  sleep 0.5
done
if [[ "$state" == degraded ]]; then
  log "$NAME is degraded; failed units:"
  nsenter -t "$leader" -a systemctl --no-legend --failed >&2 || true
fi
# Ready means reachable too: networkd has put the address on host0.
until nsenter -t "$leader" -a ip -4 -o addr show dev host0 2>/dev/null | grep -q "inet $ADDR/"; do
  ((SECONDS < deadline)) || die "$NAME: host0 never got $ADDR"
  sleep 0.2
done
log "$NAME up: $ADDR, leader pid $leader, state $state"
