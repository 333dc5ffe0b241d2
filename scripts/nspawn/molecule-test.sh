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
# The whole output also goes to var/molecule/; on failure the failed tasks are repeated at the very
# end, so that a CI log's tail says which task failed and why.
LOG="$ROOT/var/molecule/$SCENARIO-$SUBCMD-$(date -u +%Y%m%dT%H%M%SZ).log"
mkdir -p "$(dirname "$LOG")"

failed_tasks() {
  # Each "fatal:"/"failed:" result: its TASK line, then only its msg/rc/stderr/stdout/item fields
  # (a command's argv can fill a screen), 16 lines at most per result.
  awk '/^(TASK|PLAY) \[/ { task = $0; inblock = 0 }
       /^(fatal|failed): \[/ { print "--- " task; print; inblock = 1; n = 16; key = ""; next }
       inblock && /^$/ { inblock = 0 }
       inblock && /^    [A-Za-z_]+:/ { key = $1 }
       inblock && n > 0 && key ~ /^(msg|rc|stderr|stdout|item):$/ { print; n-- }' "$LOG" | head -n 40
}

cleanup() {
  local rc=$?
  if ((rc != 0)) || [[ "$SUBCMD" == test || "$SUBCMD" == destroy ]]; then
    "$ROOT/scripts/nspawn/cluster.sh" down || rc=1
    # Molecule must not believe the hosts still exist (it would skip `create` next time).
    molecule reset --scenario-name "$SCENARIO" >/dev/null 2>&1 || true
  fi
  if ((rc != 0)) && [[ -s "$LOG" ]]; then
    echo "molecule $SUBCMD $SCENARIO: the failed tasks (whole log: $LOG)" >&2
    failed_tasks >&2 || true
  fi
  echo "molecule $SUBCMD $SCENARIO: exit $rc after $((SECONDS - started)) s" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

molecule "$SUBCMD" --scenario-name "$SCENARIO" 2>&1 | tee "$LOG"
