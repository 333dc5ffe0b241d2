#!/usr/bin/env bash
# Debian/Ubuntu packages sumflow needs on this machine. Idempotent: installs only what is missing
# (as root, or through sudo), and does nothing when everything is there.
#   scripts/install-system-deps.sh run   # make run: Java for the broker, Maven to fetch it, venv
#   scripts/install-system-deps.sh all   # make test: also Prometheus, nspawn hosts, vagrant, wrk
#   scripts/install-system-deps.sh vagrant  # make test-vagrant: also libvirt + QEMU for real VMs
set -euo pipefail
profile="${1:-all}"

run_packages=(make git curl ca-certificates python3 python3-venv openjdk-17-jre-headless maven util-linux)
test_packages=(
    prometheus prometheus-node-exporter             # real Prometheus/promtool/node_exporter in tests
    systemd-container debootstrap nftables iproute2 # booted Debian containers for Molecule
    # `vagrant validate` of the Vagrantfile needs a provider: --no-install-recommends below would
    # drop vagrant-libvirt (only Recommended by vagrant), so it is named here.
    vagrant vagrant-libvirt
    wrk                                             # HTTP benchmark load
    haproxy                                         # the TLS proxy of roles/haproxy, checked and run in tests
    nodejs                                          # runs buf (make lint-proto)
)
# Real VMs under libvirt (QEMU; software emulation where nested KVM cannot boot a stock kernel), and
# what building the Debian box from Debian packages needs.
vagrant_packages=(
    libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base iptables
    ebtables e2fsprogs
)
case "$profile" in
    run) packages=("${run_packages[@]}") ;;
    all) packages=("${run_packages[@]}" "${test_packages[@]}") ;;
    vagrant) packages=("${run_packages[@]}" "${test_packages[@]}" "${vagrant_packages[@]}") ;;
    *) echo "usage: $0 [run|all|vagrant]" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm installs the pinned buf (make lint-proto). Debian ships it as its own package; a nodejs from
# elsewhere (NodeSource) carries it, and Debian's npm would conflict with that one.
if [[ $profile != run ]] && ! command -v npm >/dev/null; then
    missing+=(npm)
fi
((${#missing[@]})) || exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "missing packages (run as root): ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# Keep Debian's prometheus and haproxy packages from starting daemons: the tests start their own instances.
"${sudo[@]}" env RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}"
for unit in prometheus prometheus-node-exporter haproxy; do
    if [ -d /run/systemd/system ] && systemctl is-enabled --quiet "$unit" 2>/dev/null; then
        "${sudo[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
done
