#!/usr/bin/env bash
# System packages the tests and the local run need on Debian 12 (run as root; idempotent).
set -euo pipefail
packages=(
    make git curl ca-certificates python3 python3-venv
    openjdk-17-jre-headless maven                   # the Kafka broker (jars from Maven Central)
    prometheus prometheus-node-exporter             # real Prometheus/promtool for the observability tests
    systemd-container debootstrap nftables iproute2 # booted Debian containers for Molecule
    vagrant                                         # `vagrant validate` of the Vagrantfile
    wrk                                             # HTTP benchmark load
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian's prometheus packages start daemons where systemd is PID 1; tests start their own instances.
for unit in prometheus prometheus-node-exporter; do
    if [ -d /run/systemd/system ]; then systemctl disable --now "$unit" >/dev/null 2>&1 || true; fi
done
