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
# foreground process group) reaches only this script, which then stops them in order.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
ADDER_PORT="${ADDER_PORT:-50051}"
ADDER_METRICS_PORT="${ADDER_METRICS_PORT:-9464}"
ACCUMULATOR_PORT="${ACCUMULATOR_PORT:-8080}"
BIND_HOST="${BIND_HOST:-127.0.0.1}"
TOPIC="${SUMFLOW_TOPIC:-summation}"
DLQ_TOPIC="${SUMFLOW_DLQ_TOPIC:-summation.dlq}"
VAR="${SUMFLOW_RUN_DIR:-$ROOT/var}"
LOGS="$VAR/logs"
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
for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$ADDER_PORT" "$ADDER_METRICS_PORT" "$ACCUMULATOR_PORT"; do
  if "$PY" -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex(('127.0.0.1', $port)) != 0)"; then
    die "port $port is already in use (set the matching *_PORT variable)"
  fi
done

say "fetching Kafka 4.1.1 from Maven Central if needed (first run: about a minute)"
scripts/kafka/fetch.sh fetch

mkdir -p "$VAR/kafka" "$VAR/adder" "$VAR/accumulator" "$LOGS"
rm -f "$VAR/kafka.ready"

PIDS=()
STOPPING=0
cleanup() {
  trap - INT TERM EXIT
  say "stopping..."
  # Services first (they commit their state and leave the broker cleanly), then the broker
  # (kraft.py stops its JVM with a controlled shutdown).
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
    for _ in $(seq 1 900); do kill -0 "${PIDS[i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${PIDS[i]}" 2>/dev/null || true
  done
  say "stopped; state kept in $VAR"
}
trap 'STOPPING=1' INT TERM
trap cleanup EXIT

say "starting Kafka (KRaft, single node) on 127.0.0.1:$KAFKA_PORT, data in var/kafka"
setsid "$PY" scripts/kafka/kraft.py run --data-dir "$VAR/kafka" --port "$KAFKA_PORT" \
  --controller-port "$KAFKA_CONTROLLER_PORT" --topic "$TOPIC" --topic "$DLQ_TOPIC" \
  --ready-file "$VAR/kafka.ready" >"$LOGS/kafka-runner.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do
  [[ -f "$VAR/kafka.ready" ]] && break
  [[ $STOPPING == 1 ]] && exit 0
  kill -0 "${PIDS[0]}" 2>/dev/null || { cat "$LOGS/kafka-runner.log" >&2; die "Kafka did not start (log: var/kafka/broker.log)"; }
  sleep 0.5
done
[[ -f "$VAR/kafka.ready" ]] || die "Kafka not ready after 150 s (log: var/kafka/broker.log)"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

export SUMFLOW_KAFKA_BOOTSTRAP="$BOOTSTRAP" SUMFLOW_TOPIC="$TOPIC" SUMFLOW_DLQ_TOPIC="$DLQ_TOPIC"

say "starting sumflow-accumulator on http://$BIND_HOST:$ACCUMULATOR_PORT (state in var/accumulator)"
SUMFLOW_HTTP_LISTEN="$BIND_HOST:$ACCUMULATOR_PORT" SUMFLOW_STATE_DIR="$VAR/accumulator" \
  setsid "$VENV/bin/sumflow-accumulator" >>"$LOGS/accumulator.log" 2>&1 &
PIDS+=($!)

say "starting sumflow-adder on $BIND_HOST:$ADDER_PORT (de-dupe store in var/adder)"
SUMFLOW_GRPC_LISTEN="$BIND_HOST:$ADDER_PORT" SUMFLOW_METRICS_LISTEN="$BIND_HOST:$ADDER_METRICS_PORT" \
  SUMFLOW_DEDUPE_DIR="$VAR/adder/dedupe" setsid "$VENV/bin/sumflow-adder" >>"$LOGS/adder.log" 2>&1 &
PIDS+=($!)

"$PY" - "$BIND_HOST" "$ADDER_PORT" "$ACCUMULATOR_PORT" "${PIDS[1]}" "${PIDS[2]}" <<'EOF' || { [[ $STOPPING == 1 ]] && exit 0; die "services did not become ready (logs: $LOGS)"; }
import os, signal, sys, time, urllib.request
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

signal.signal(signal.SIGINT, lambda *_: sys.exit(1))  # Ctrl-C while waiting: run-local stops everything
host, adder_port, acc_port, acc_pid, adder_pid = sys.argv[1:]
host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]") else host
deadline = time.monotonic() + 90
acc_ready = adder_ready = False
with grpc.insecure_channel(f"{host}:{adder_port}") as channel:
    health = health_pb2_grpc.HealthStub(channel)
    while time.monotonic() < deadline and not (acc_ready and adder_ready):
        for name, pid in (("accumulator", acc_pid), ("adder", adder_pid)):
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                sys.exit(f"{name} exited")
        if not acc_ready:
            try:
                with urllib.request.urlopen(f"http://{host}:{acc_port}/readyz", timeout=2) as r:
                    acc_ready = r.status == 200
            except OSError:
                pass
        if not adder_ready:
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service="sumflow.v1.SumService"), timeout=2)
                adder_ready = reply.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                pass
        time.sleep(0.3)
sys.exit(0 if acc_ready and adder_ready else 1)
EOF

RUN_DIR="${VAR#"$ROOT"/}"
CLIENT_ENV=""
if [[ "$ADDER_PORT:$ADDER_METRICS_PORT:$ACCUMULATOR_PORT:$BIND_HOST" != "50051:9464:8080:127.0.0.1" ]]; then
  CLIENT_ENV="export SUMFLOW_ADDER_TARGET=$BIND_HOST:$ADDER_PORT SUMFLOW_ADDER_METRICS_URL=http://$BIND_HOST:$ADDER_METRICS_PORT SUMFLOW_ACCUMULATOR_URL=http://$BIND_HOST:$ACCUMULATOR_PORT
    "
fi
cat <<EOF

  sumflow is up (Ctrl-C stops everything; state stays in $RUN_DIR/)

  Kafka bootstrap      $BOOTSTRAP   (topics: $TOPIC, $DLQ_TOPIC)
  Adder gRPC           $BIND_HOST:$ADDER_PORT   (sumflow.v1.SumService, health, reflection)
  Adder metrics        http://$BIND_HOST:$ADDER_METRICS_PORT/metrics
  Accumulator REST     http://$BIND_HOST:$ACCUMULATOR_PORT/api/total   /api/summations?limit=10   /api/final
                       /healthz  /readyz  /metrics  /api/openapi.json
  Logs (JSON lines)    $RUN_DIR/logs/adder.log  $RUN_DIR/logs/accumulator.log  $RUN_DIR/kafka/broker.log

  Try it, in another terminal:
    . ${VENV#"$ROOT"/}/bin/activate
    ${CLIENT_ENV}sumflow add 40 2
    sumflow total
    sumflow status

EOF

# Run until Ctrl-C or until any of the three exits (then stop the others).
set +e
while [[ $STOPPING == 0 ]]; do
  wait -n "${PIDS[@]}"
  for pid in "${PIDS[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null && [[ $STOPPING == 0 ]]; then
      say "a process exited; see $LOGS/ and $VAR/kafka/broker.log"
      exit 1
    fi
  done
done
exit 0
