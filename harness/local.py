"""`make run`: one KRaft broker, the accumulator and the adder on this machine, state under ./var/.

Run by scripts/run-local.sh (which first makes the runtime-only venv `.venv-run`) as
`.venv-run/bin/python -m harness.local`: the services are that venv's console scripts. Ctrl-C (or
SIGTERM) stops the services (SIGTERM, then SIGKILL after 90 s), then the broker (controlled shutdown),
and exits 0; state is kept, so a second run resumes. Everything is configured from the environment:

    KAFKA_PORT=9092 KAFKA_CONTROLLER_PORT=9093 ADDER_PORT=50051 ADDER_METRICS_PORT=9464
    ACCUMULATOR_PORT=8080 BIND_HOST=127.0.0.1 SUMFLOW_RUN_DIR=./var
    SUMFLOW_TOPIC=summation SUMFLOW_DLQ_TOPIC=summation.dlq

Any other SUMFLOW_* setting in the environment reaches the services unchanged. Needs only the app's
runtime dependencies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType

from harness.env import accumulator_env, adder_env, process_env
from harness.kafka import FETCH_SCRIPT, KAFKA_VERSION, REPO_ROOT, KafkaBroker, KafkaHarnessError, create_topics
from harness.ports import port_open
from harness.processes import AccumulatorProcess, AdderProcess, ServiceError, ServiceProcess

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 90.0
DEFAULT_ENDPOINTS = "50051:9464:8080:127.0.0.1"


class Interrupted(BaseException):  # like KeyboardInterrupt: no `except Exception` swallows it
    """Ctrl-C or SIGTERM while starting up."""


def say(message: str, *, err: bool = False) -> None:
    print(f"\033[1m[run-local]\033[0m {message}", file=sys.stderr if err else sys.stdout, flush=True)


def shown(path: Path) -> str:
    """A path as the user knows it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


class LocalRun:
    def __init__(self, environ: dict[str, str]) -> None:
        self.kafka_port = int(environ.get("KAFKA_PORT", "9092"))
        self.controller_port = int(environ.get("KAFKA_CONTROLLER_PORT", "9093"))
        self.adder_port = int(environ.get("ADDER_PORT", "50051"))
        self.metrics_port = int(environ.get("ADDER_METRICS_PORT", "9464"))
        self.accumulator_port = int(environ.get("ACCUMULATOR_PORT", "8080"))
        self.host = environ.get("BIND_HOST", "127.0.0.1")
        self.topic = environ.get("SUMFLOW_TOPIC", "summation")
        self.dlq_topic = environ.get("SUMFLOW_DLQ_TOPIC", "summation.dlq")
        self.var = Path(environ.get("SUMFLOW_RUN_DIR") or REPO_ROOT / "var").absolute()
        self.logs = self.var / "logs"
        self.stopping = threading.Event()
        self.starting = True
        self.broker: KafkaBroker | None = None
        self.services: list[ServiceProcess] = []

    @property
    def ports(self) -> list[int]:
        return [self.kafka_port, self.controller_port, self.adder_port, self.metrics_port, self.accumulator_port]

    def on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        first = not self.stopping.is_set()
        self.stopping.set()
        if first and self.starting:
            raise Interrupted

    def run(self) -> int:
        for port in self.ports:
            if port_open(port):
                say(f"ERROR: port {port} is already in use (set the matching *_PORT variable)", err=True)
                return 1
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)
        say(f"fetching Kafka {KAFKA_VERSION} from Maven Central if needed (first run: about a minute)")
        try:
            fetched = subprocess.run([str(FETCH_SCRIPT), "fetch"], check=False).returncode == 0
        except Interrupted:
            return 0
        if not fetched:
            say("ERROR: fetching Kafka failed", err=True)
            return 1
        for directory in ("kafka", "adder", "accumulator", "logs"):
            (self.var / directory).mkdir(parents=True, exist_ok=True)
        with self.cleanup():
            try:
                self.start()
            except Interrupted:
                return 0
            except (KafkaHarnessError, ServiceError) as exc:
                say(f"ERROR: {exc}", err=True)
                return 1
            self.starting = False
            if self.stopping.is_set():
                return 0
            self.print_banner()
            return self.supervise()

    def start(self) -> None:
        say(f"starting Kafka (KRaft, single node) on 127.0.0.1:{self.kafka_port}, data in {shown(self.var / 'kafka')}")
        self.broker = KafkaBroker(self.var / "kafka", port=self.kafka_port, controller_port=self.controller_port)
        try:
            self.broker.start(timeout=150)
        except KafkaHarnessError as exc:
            raise KafkaHarnessError(f"Kafka did not start (log: {shown(self.broker.log_path)}): {exc}") from None
        create_topics(self.broker.bootstrap, [self.topic, self.dlq_topic], 1, 1)

        say(
            f"starting sumflow-accumulator on http://{self.host}:{self.accumulator_port} "
            f"(state in {shown(self.var / 'accumulator')})"
        )
        accumulator = AccumulatorProcess(
            process_env(
                accumulator_env(
                    self.broker.bootstrap,
                    self.topic,
                    self.var / "accumulator",
                    http_port=self.accumulator_port,
                    dlq_topic=self.dlq_topic,
                    consumer_group="",  # the app's default group, or the user's SUMFLOW_CONSUMER_GROUP
                    host=self.host,
                    defaults={},
                ),
                inherit=True,
            ),
            self.var / "accumulator",
            log_path=self.logs / "accumulator.log",
            banner=False,
        )
        self.services.append(accumulator)
        accumulator.start(wait=False)

        say(f"starting sumflow-adder on {self.host}:{self.adder_port} (de-dupe store in {shown(self.var / 'adder')})")
        adder = AdderProcess(
            process_env(
                adder_env(
                    self.broker.bootstrap,
                    self.topic,
                    self.var / "adder" / "dedupe",
                    grpc_port=self.adder_port,
                    metrics_port=self.metrics_port,
                    host=self.host,
                    defaults={},
                    SUMFLOW_DLQ_TOPIC=self.dlq_topic,
                ),
                inherit=True,
            ),
            self.var / "adder",
            log_path=self.logs / "adder.log",
            banner=False,
        )
        self.services.append(adder)
        adder.start(wait=False)

        try:
            accumulator.wait_ready(READY_TIMEOUT_S)
            adder.wait_ready(READY_TIMEOUT_S)
        except ServiceError as exc:
            raise ServiceError(f"services did not become ready (logs: {self.logs}): {exc}") from None

    def print_banner(self) -> None:
        run_dir = shown(self.var)
        venv = shown(Path(sys.prefix))
        client_env = ""
        if f"{self.adder_port}:{self.metrics_port}:{self.accumulator_port}:{self.host}" != DEFAULT_ENDPOINTS:
            client_env = (
                f"export SUMFLOW_ADDER_TARGET={self.host}:{self.adder_port} "
                f"SUMFLOW_ADDER_METRICS_URL=http://{self.host}:{self.metrics_port} "
                f"SUMFLOW_ACCUMULATOR_URL=http://{self.host}:{self.accumulator_port}\n    "
            )
        assert self.broker is not None
        print(
            f"""
  sumflow is up (Ctrl-C stops everything; state stays in {run_dir}/)

  Kafka bootstrap      {self.broker.bootstrap}   (topics: {self.topic}, {self.dlq_topic})
  Adder gRPC           {self.host}:{self.adder_port}   (sumflow.v1.SumService, health, reflection)
  Adder metrics        http://{self.host}:{self.metrics_port}/metrics
  Accumulator REST     http://{self.host}:{self.accumulator_port}/api/total   /api/summations?limit=10   /api/final
                       /healthz  /readyz  /metrics  /api/openapi.json
  Logs (JSON lines)    {run_dir}/logs/adder.log  {run_dir}/logs/accumulator.log  {run_dir}/kafka/broker.log

  Try it, in another terminal:
    . {venv}/bin/activate
    {client_env}sumflow add 40 2
    sumflow total
    sumflow status
""",
            flush=True,
        )

    def supervise(self) -> int:
        """Until Ctrl-C (0) or until any of the three exits (1)."""
        assert self.broker is not None
        while not self.stopping.wait(0.5):
            if not self.broker.is_alive() or not all(service.is_alive() for service in self.services):
                say(f"a process exited; see {self.logs}/ and {self.var / 'kafka' / 'broker.log'}")
                return 1
        return 0

    @contextmanager
    def cleanup(self) -> Iterator[None]:
        try:
            yield
        finally:
            self.starting = False
            self.stopping.set()  # a later Ctrl-C must not interrupt the stop
            say("stopping...")
            # Services first (they commit their state and leave the broker cleanly), then the broker
            # (a controlled shutdown).
            for service in reversed(self.services):
                with suppress(ServiceError):
                    service.stop(STOP_TIMEOUT_S)
                service.kill()
            if self.broker is not None:
                self.broker.stop()
            say(f"stopped; state kept in {self.var}")


def main() -> int:
    return LocalRun(dict(os.environ)).run()


if __name__ == "__main__":
    sys.exit(main())
