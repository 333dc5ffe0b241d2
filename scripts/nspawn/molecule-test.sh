#!/usr/bin/env bash
# `make test-deploy`: the full Molecule sequence of molecule/default (destroy, syntax, create, converge,
# idempotence, verify, destroy) on booted nspawn hosts, timed. Whatever happens (failure, Ctrl-C,
# SIGTERM), the EXIT trap removes the hosts, overlays, cgroups, bridge and NAT and restores ip_forward.
#   scripts/nspawn/molecule-test.sh [molecule subcommand, default: test]
set -Eeuo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"   # molecule runs ansible-playbook by name
export ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}" PY_COLORS="${PY_COLORS:-0}" NO_COLOR="${NO_COLOR:-1}"

cleanup() {
  local rc=$?
  "$ROOT/scripts/nspawn/cluster.sh" down || rc=1
  echo "molecule $SUBCMD: exit $rc after $((SECONDS - started)) s" >&2
  exit "$rc"
}
started=$SECONDS
SUBCMD="${1:-test}"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

molecule "$SUBCMD" --scenario-name default
