#!/usr/bin/env bash
# make test-vagrant: the user's own `vagrant up` on real VMs (libvirt; QEMU software emulation here),
# checked from the host, then destroyed. Always cleans up (VMs, volumes, the libvirt networks Vagrant
# made, the daemons this script started), also on failure or Ctrl-C.
#
#   scripts/vagrant/test.sh            KAFKA_NODES=1 (kafka1, app1, mon1)
#   KAFKA_NODES=3 scripts/vagrant/test.sh
#
# Phases (each timed; the summary goes to stdout and to var/vagrant/<layout>-<stamp>.log):
#   box        scripts/vagrant/build-box.sh (cached: a no-op when the box is added)
#   artifacts  Kafka tarball from Maven Central jars, Prometheus/node_exporter from Debian's binaries
#   up         SUMFLOW_BOX=sumflow/debian12 SUMFLOW_LIBVIRT_DRIVER=qemu vagrant up --provider=libvirt
#              (with SUMFLOW_GRAFANA_STACK=false SUMFLOW_ARTIFACTS=local: what cannot be downloaded here)
#   status     systemctl status of every unit on every VM, over `vagrant ssh`
#   flow       one AddNumbers call over TLS (trusting only the controller's CA) to app1 raises app1's
#              /api/total by exactly the sum (and a retry is a duplicate)
#   refused    a plaintext AddNumbers call to app1 is refused (UNAVAILABLE)
#   targets    Prometheus on mon1 (over https, logged in) reports every scrape target up
#   k6         load/grpc.js and load/rest.js against app1 (~30 s each, low rate); checks and the applied count pass
#   provision  a second `vagrant provision` reports changed=0 on every host
# Traffic goes only to the VMs this script made.
set -Eeuo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
require_root
cd "$ROOT"

VENV="${VENV:-$ROOT/.venv}"
export KAFKA_NODES="${KAFKA_NODES:-1}"
NET="${SUMFLOW_VAGRANT_NET:-192.168.56}"
APP="$NET.21"
MON="$NET.31"
K6_SECONDS="${K6_SECONDS:-30}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/var/vagrant"
mkdir -p "$OUT"
REPORT="$OUT/kafka${KAFKA_NODES}-$stamp.log"

for tool in "$VENV/bin/ansible-playbook" "$VENV/bin/python" "$VENV/bin/k6"; do
  [[ -x "$tool" ]] || die "$tool is missing: run 'make venv' first"
done
command -v vagrant >/dev/null && command -v virsh >/dev/null || die "vagrant/libvirt missing: scripts/install-system-deps.sh vagrant"

# The user's command and its environment; small VMs (one vCPU each: QEMU emulates every vCPU on the
# host's two cores).
export SUMFLOW_BOX="$SUMFLOW_BOX_NAME" SUMFLOW_LIBVIRT_DRIVER=qemu
export SUMFLOW_GRAFANA_STACK=false SUMFLOW_ARTIFACTS=local
export SUMFLOW_KAFKA_MEMORY="${SUMFLOW_KAFKA_MEMORY:-1536}" SUMFLOW_KAFKA_CPUS="${SUMFLOW_KAFKA_CPUS:-1}"
export SUMFLOW_APP_MEMORY="${SUMFLOW_APP_MEMORY:-1536}" SUMFLOW_APP_CPUS="${SUMFLOW_APP_CPUS:-1}"
export SUMFLOW_MON_MEMORY="${SUMFLOW_MON_MEMORY:-1024}" SUMFLOW_MON_CPUS="${SUMFLOW_MON_CPUS:-1}"
export PATH="$VENV/bin:$PATH"
# A fresh SSH control path per run: a stale master from an earlier run hangs Ansible.
ANSIBLE_SSH_CONTROL_PATH_DIR="$(mktemp -d /tmp/sumflow-vagrant-cp.XXXXXX)"
export ANSIBLE_SSH_CONTROL_PATH_DIR
export K6_NO_USAGE_REPORT=true
# Each provisioner task's wall time, and the slowest 40 at the end of each run: where an emulated
# converge spends its hours.
export ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks PROFILE_TASKS_TASK_OUTPUT_LIMIT=40
# The internal CA the provisioner's pki role keeps on this controller (outside the repository): the
# host-side checks call the adder over TLS trusting only it.
export SUMFLOW_PKI_DIR="${SUMFLOW_PKI_DIR:-$HOME/.local/share/sumflow/pki}"
CA="$SUMFLOW_PKI_DIR/ca.crt"

report() { printf '%s\n' "$*" | tee -a "$REPORT"; }
declare -A PHASE_S=()
PHASES=()
phase() {  # phase NAME CMD...: runs CMD with its output in the log, records the wall time
  local name="$1" started=$SECONDS rc=0
  shift
  log "phase $name"
  "$@" > >(tee -a "$REPORT.$name" >&2) 2>&1 || rc=$?
  PHASE_S[$name]=$((SECONDS - started))
  PHASES+=("$name")
  report "phase $name: ${PHASE_S[$name]} s (exit $rc)"
  return "$rc"
}

networks_before="$(mktemp)"
# The clean-up writes to the script's own output, not to the phase's: a Ctrl-C (SIGINT to the whole
# process group) also kills the phase's tee, and the trap runs inside that phase's redirection, so
# its first log line would die of SIGPIPE and leave the VMs running (seen after an interrupt).
exec {ORIG_OUT}>&1 {ORIG_ERR}>&2
cleanup() {
  local rc=$?
  # A second Ctrl-C (or a write to a dead pipe) must not cut the clean-up short.
  trap "" INT TERM PIPE
  exec 1>&"$ORIG_OUT" 2>&"$ORIG_ERR"
  trap - EXIT
  log "cleanup: vagrant destroy -f"
  vagrant destroy -f >>"$REPORT.destroy" 2>&1 || log "vagrant destroy failed (see $REPORT.destroy)"
  # Whatever Vagrant left: domains and volumes of this project, and networks it made.
  local dom vol net
  for dom in $(virsh -q list --all --name 2>/dev/null | grep -E "^$(basename "$ROOT")_(kafka[0-9]|app1|mon1)$" || true); do
    virsh -q destroy "$dom" >/dev/null 2>&1 || true
    virsh -q undefine "$dom" --remove-all-storage >/dev/null 2>&1 || true
  done
  for vol in $(virsh -q vol-list "$LIBVIRT_POOL" 2>/dev/null | awk '{print $1}' | grep -E "^$(basename "$ROOT")_(kafka[0-9]|app1|mon1)" || true); do
    virsh -q vol-delete --pool "$LIBVIRT_POOL" "$vol" >/dev/null 2>&1 || true
  done
  for net in $(virsh -q net-list --all --name 2>/dev/null); do
    grep -qx "$net" "$networks_before" && continue
    virsh -q net-destroy "$net" >/dev/null 2>&1 || true
    virsh -q net-undefine "$net" >/dev/null 2>&1 || true
  done
  rm -rf "$ANSIBLE_SSH_CONTROL_PATH_DIR" "$networks_before"
  libvirt_down
  report "result: $([[ $rc -eq 0 ]] && echo PASSED || echo "FAILED (exit $rc)") after $SECONDS s; log $REPORT"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

libvirt_up
virsh -q net-list --all --name >"$networks_before"
report "test-vagrant $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown) KAFKA_NODES=$KAFKA_NODES"

kafka_hosts() { seq 1 "$KAFKA_NODES" | sed 's/^/kafka/'; }

check_units() {
  local host units
  for host in $(kafka_hosts) app1 mon1; do
    case "$host" in
      kafka*) units="kafka node_exporter" ;;
      app1) units="sumflow-adder sumflow-accumulator haproxy node_exporter" ;;
      mon1) units="prometheus node_exporter" ;;
    esac
    echo "== $host: systemctl status $units"
    vagrant ssh "$host" -c "systemctl status --no-pager --lines=3 $units && ! systemctl --failed --no-legend | grep -q ." </dev/null
  done
}

# Prometheus serves HTTPS with basic auth: trust only the controller's CA, log in with the password the
# prometheus role generated on this controller.
check_targets() {
  "$VENV/bin/python" molecule/default/files/deployment_probe.py targets --prometheus "https://$MON:9090" \
    --ca "$CA" --user sumflow --password-file "$HOME/.cache/sumflow/ansible/credentials/prometheus_web_password" \
    --expect "$((2 * KAFKA_NODES + 4))" --timeout 180
}

run_k6() {
  local script
  for script in grpc rest; do
    echo "== k6 run load/$script.js ($K6_SECONDS s, low rate)"
    # Emulated VMs answer in hundreds of ms: the latency thresholds are widened here, the checks
    # (every answer right, the applied count equal to the accepted calls) are not.
    SUMFLOW_GRPC_TARGET="$APP:50051" SUMFLOW_TLS_CA="$CA" SUMFLOW_REST_URL="https://$APP:8080" SSL_CERT_FILE="$CA" \
      SCENARIOS=open RATE=5 PEAK_RATE=10 PRE_VUS=5 MAX_VUS=20 \
      RAMP_S=5 HOLD_S=$((K6_SECONDS - 10)) PEAK_S=5 RAMP_DOWN_S=1 \
      GRPC_P95_MS=5000 GRPC_P99_MS=10000 HTTP_P95_MS=5000 HTTP_P99_MS=10000 SETTLE_SECONDS=120 \
      "$VENV/bin/k6" run --quiet "load/$script.js"
  done
}

provision_again() {
  local recap
  recap="$(vagrant provision mon1 2>&1 | tee /dev/stderr | grep -E '^[a-z0-9]+ +: ok=')"
  echo "$recap"
  [[ -n "$recap" ]] || { echo "no PLAY RECAP in the output"; return 1; }
  if [[ -n "$(grep -Ev 'changed=0 .*failed=0' <<<"$recap")" ]]; then
    echo "second provision changed something or failed"
    return 1
  fi
}

phase box "$HERE/build-box.sh"
phase artifacts bash -c 'scripts/kafka/fetch.sh pack && scripts/pack-prometheus-artifacts.sh'
phase up vagrant up --provider=libvirt
phase status check_units
phase flow "$VENV/bin/python" molecule/default/files/deployment_probe.py flow \
  --adder "$APP:50051" --ca "$CA" --accumulator "https://$APP:8080" --timeout 300
phase refused "$VENV/bin/python" molecule/default/files/deployment_probe.py refused --adder "$APP:50051"
phase targets check_targets
phase k6 run_k6
phase provision provision_again
summary="phases:"
for p in "${PHASES[@]}"; do summary+=" $p=${PHASE_S[$p]}s"; done
report "$summary"
