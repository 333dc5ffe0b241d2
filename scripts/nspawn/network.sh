#!/usr/bin/env bash
# Bridge + NAT for the nspawn test hosts.
#   scripts/nspawn/network.sh up     create bridge $NSPAWN_BRIDGE ($NSPAWN_PREFIX.1/24), masquerade, ip_forward=1
#   scripts/nspawn/network.sh down   remove all of it and restore ip_forward to what it was before `up`
# NAT exists only so apt inside the hosts reaches the Debian mirror. Our own nft table
# (inet sumflow_nspawn) holds the rule, so removing it never touches anyone else's rules.
set -Eeuo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
require_root

NFT_TABLE="sumflow_nspawn_${NSPAWN_BRIDGE//[^a-zA-Z0-9]/_}"
FWD_SAVE="$NSPAWN_RUN/ip_forward.orig"

up() {
  mkdir -p "$NSPAWN_RUN"
  if ! ip link show dev "$NSPAWN_BRIDGE" >/dev/null 2>&1; then
    ip link add name "$NSPAWN_BRIDGE" type bridge
    ip addr add "$NSPAWN_PREFIX.1/24" dev "$NSPAWN_BRIDGE"
  fi
  ip link set dev "$NSPAWN_BRIDGE" up
  [[ -f "$FWD_SAVE" ]] || sysctl -n net.ipv4.ip_forward >"$FWD_SAVE"
  sysctl -q -w net.ipv4.ip_forward=1
  local uplink
  uplink="$(ip -o route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')"
  [[ -n "$uplink" ]] || die "no default route: the hosts cannot reach the Debian mirror"
  nft delete table inet "$NFT_TABLE" 2>/dev/null || true
  nft -f - <<NFT
table inet $NFT_TABLE {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr $NSPAWN_PREFIX.0/24 oifname "$uplink" masquerade
  }
}
NFT
  log "bridge $NSPAWN_BRIDGE $NSPAWN_PREFIX.1/24 up, NAT via $uplink"
}

down() {
  if ip link show dev "$NSPAWN_BRIDGE" >/dev/null 2>&1; then
    ip link delete dev "$NSPAWN_BRIDGE" type bridge
  fi
  nft delete table inet "$NFT_TABLE" 2>/dev/null || true
  if [[ -f "$FWD_SAVE" ]]; then
    sysctl -q -w net.ipv4.ip_forward="$(cat "$FWD_SAVE")"
    rm -f "$FWD_SAVE"
  fi
  log "bridge $NSPAWN_BRIDGE, NAT table and ip_forward restored"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down" ;;
esac
