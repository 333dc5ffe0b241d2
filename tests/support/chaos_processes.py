"""The two services as real subprocesses for the chaos and fuzz suites: start, SIGKILL, restart.

    acc = AccumulatorProcess(accumulator_env(bootstrap, topic, dlq, state_dir), tmp_path / "acc.log")
    acc.start(); acc.wait_ready(); acc.kill(); acc.start()
    adder = AdderProcess(adder_env(bootstrap, topic, dedupe_dir), tmp_path / "adder.log")
    adder.start(); adder.target  # "127.0.0.1:PORT", the same port after every restart

Logs go to files (appended across restarts) so a pipe can never fill up and block a service.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.broker import free_port
from tests.support.http_client import http_get

BIN = Path(sys.executable).parent
ADDER_SCRIPT = BIN / "sumflow-adder"
ACCUMULATOR_SCRIPT = BIN / "sumflow-accumulator"


def clean_env() -> dict[str, str]:
    """The parent environment without any SUMFLOW_* setting, systemd socket or OTLP exporter."""
    drop = ("SUMFLOW_", "NOTIFY_SOCKET", "OTEL_", "PROMETHEUS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def adder_env(bootstrap: str, topic: str, dedupe_dir: Path, **extra: str) -> dict[str, str]:
    return clean_env() | {
        "SUMFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "SUMFLOW_TOPIC": topic,
        "SUMFLOW_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
        "SUMFLOW_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        "SUMFLOW_DEDUPE_DIR": str(dedupe_dir),
        "SUMFLOW_GRPC_WORKERS": "16",
        "SUMFLOW_LOG_LEVEL": "WARNING",
        **extra,
    }


def accumulator_env(bootstrap: str, topic: str, dlq_topic: str, state_dir: Path, **extra: str) -> dict[str, str]:
    return clean_env() | {
        "SUMFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "SUMFLOW_TOPIC": topic,
        "SUMFLOW_DLQ_TOPIC": dlq_topic,
        "SUMFLOW_STATE_DIR": str(state_dir),
        "SUMFLOW_HTTP_LISTEN": "127.0.0.1:0",
        "SUMFLOW_CONSUMER_GROUP": f"g-{topic}",
        "SUMFLOW_HTTP_THREADS": "4",
        "SUMFLOW_LOG_LEVEL": "INFO",
        **extra,
    }


class _Process:
    script: Path
    name: str

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def _spawn(self, *args: str) -> None:
        with self.log_path.open("ab") as log:
            log.write(f'{{"msg": "===== {self.name} start {self.starts + 1} ====="}}\n'.encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(self.script), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (no cleanup at all) and reap."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
            self.kills += 1

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit status (SIGKILL if it does not stop in time)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise
        return self.proc.returncode

    def log_lines(self) -> list[dict]:
        lines = []
        for raw in self.log_path.read_bytes().splitlines():
            try:
                lines.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                continue
        return lines

    def log_tail(self, count: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-count:])
        except OSError:
            return "(no log)"


class AccumulatorProcess(_Process):
    script = ACCUMULATOR_SCRIPT
    name = "accumulator"

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(env, log_path)
        self.port = 0

    def start(self, timeout: float = 90.0) -> None:
        """Exec and wait for the HTTP port (its 'accumulator started' log line); not for readiness."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._spawn()
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                for raw in log.read().splitlines():
                    if b"accumulator started" in raw:
                        self.port = int(json.loads(raw)["http_port"])
                        return
            if not self.alive():
                raise AssertionError(f"accumulator exited with {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        raise AssertionError(f"accumulator not started after {timeout}s:\n{self.log_tail()}")

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """(status, body) of GET `path`; a 4xx/5xx is an answer, not an exception."""
        return http_get(f"http://127.0.0.1:{self.port}{path}", timeout)

    def ready(self) -> bool:
        try:
            return self.get("/readyz", timeout=3)[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 90.0) -> None:
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self.ready():
                return
            if not self.alive():
                raise AssertionError(f"accumulator exited with {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        raise AssertionError(f"accumulator not ready after {timeout}s:\n{self.log_tail()}")

    def total(self) -> dict:
        status, body = self.get("/api/total")
        assert status == 200, body
        return json.loads(body)

    def wait_applied(self, applied: int, timeout: float = 180.0) -> dict:
        """Poll /api/total until `applied` events are applied (never more: that is asserted by callers)."""
        give_up = time.monotonic() + timeout
        doc: dict = {}
        while time.monotonic() < give_up:
            try:
                doc = self.total()
            except OSError:
                doc = {}
            if doc.get("applied", -1) >= applied:
                return doc
            time.sleep(0.1)
        raise AssertionError(f"applied {doc} < {applied} after {timeout}s:\n{self.log_tail()}")


class AdderProcess(_Process):
    script = ADDER_SCRIPT
    name = "adder"

    @property
    def target(self) -> str:
        return self.env["SUMFLOW_GRPC_LISTEN"]

    def start(self, timeout: float = 90.0) -> None:
        """Exec and wait until gRPC health says SERVING."""
        self._spawn()
        channel = grpc.insecure_channel(self.target)
        try:
            health = health_pb2_grpc.HealthStub(channel)
            give_up = time.monotonic() + timeout
            while time.monotonic() < give_up:
                if not self.alive():
                    raise AssertionError(f"adder exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(service="sumflow.v1.SumService"), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        finally:
            channel.close()
        raise AssertionError(f"adder not SERVING after {timeout}s:\n{self.log_tail()}")
