#!/usr/bin/env bash
# `make test-deploy` / `make test-roles`: the full Molecule sequence of a scenario (default: the whole
# site in molecule/default; or a role's, e.g. kafka) on booted nspawn hosts, timed. For `test` and `destroy`, and for ANY
# command that fails or is interrupted (Ctrl-C, SIGTERM), the EXIT trap removes the hosts, overlays,
# cgroups, bridge and NAT and restores ip_forward. A successful create/converge/verify keeps the hosts
# up to look at them (scripts/nspawn/cluster.sh status|exec; `molecule-test.sh destroy` when done).
#   scripts/nspawn/molecule-test.sh [molecule subcommand, default: test] [scenario, default: default]
set -Eeuo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH" # molecule runs ansible-playbook by name
export ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}" PY_COLORS="${PY_COLORS:-0}" NO_COLOR="${NO_COLOR:-1}"

SUBCMD="${1:-test}"
SCENARIO="${2:-default}"
started=$SECONDS

cleanup() {
  local rc=$?
  if ((rc != 0)) || [[ "$SUBCMD" == test || "$SUBCMD" == destroy ]]; then
    "$ROOT/scripts/nspawn/cluster.sh" down || rc=1
    # Molecule must not believe the hosts still exist (it would skip `create` next time).
    molecule reset --scenario-name "$SCENARIO" >/dev/null 2>&1 || true
  fi
  echo "molecule $SUBCMD $SCENARIO: exit $rc after $((SECONDS - started)) s" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

molecule "$SUBCMD" --scenario-name "$SCENARIO"
