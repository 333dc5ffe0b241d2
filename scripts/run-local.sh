#!/usr/bin/env bash
# Bring sumflow up locally in one command: a single-node KRaft Kafka broker, the gRPC adder and the
# REST accumulator, with every piece of state under ./var/. Ctrl-C stops the services, then the
# broker, and exits 0 (state is kept; run it again to resume; `rm -rf var` to start from zero).
#
#   make run                 # or: scripts/run-local.sh
#
# Ports (override through the environment): KAFKA_PORT=9092 KAFKA_CONTROLLER_PORT=9093
# ADDER_PORT=50051 ADDER_METRICS_PORT=9464 ACCUMULATOR_PORT=8080 BIND_HOST=127.0.0.1
# SUMFLOW_RUN_DIR=./var holds the state and logs.
#
# The broker and the services run in sessions of their own: the terminal's Ctrl-C (SIGINT to the
# foreground process group) reaches only this script's process (`python -m harness.local`, which it
# becomes), which then stops them in order.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The run-only venv (make venv-run: the hash-locked runtime dependencies and the package, ~60 MB).
VENV="${SUMFLOW_RUN_VENV:-$ROOT/.venv-run}"
PY="$VENV/bin/python"

say() { printf '\033[1m[run-local]\033[0m %s\n' "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

command -v java >/dev/null || die "Java 17+ is required: sudo apt-get install -y openjdk-17-jre-headless"
command -v mvn >/dev/null || die "Maven is required to fetch Kafka from Maven Central: sudo apt-get install -y maven"
if [[ ! -x "$PY" || ! -x "$VENV/bin/sumflow-adder" ]]; then
  say "creating the Python venv (make venv-run)"
  make -s venv-run RUN_VENV="$VENV"
fi
# The rest is Python (harness/local.py, runtime dependencies only): fetch Kafka, start the broker, the
# accumulator and the adder through the harness, print the endpoints, and stop them in order on Ctrl-C.
exec "$PY" -m harness.local
