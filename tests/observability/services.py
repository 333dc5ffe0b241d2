"""Start sumflow-adder and sumflow-accumulator as real subprocesses (the console scripts in the venv)
on loopback free ports, with JSON logs captured to files the log test reads."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.observability.processes import free_port

BIN = Path(sys.executable).parent


@dataclass(frozen=True, slots=True)
class RunningServices:
    grpc_target: str
    adder_metrics: str  # host:port
    accumulator_http: str  # host:port, metrics at /metrics
    adder_log: Path
    accumulator_log: Path


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def sumflow_services(
    workdir: Path, *, bootstrap: str, topic: str, dlq_topic: str, otlp_endpoint: str
) -> Iterator[RunningServices]:
    grpc_port, metrics_port, http_port = free_port(), free_port(), free_port()
    common = {
        **os.environ,
        "SUMFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "SUMFLOW_TOPIC": topic,
        "SUMFLOW_LOG_LEVEL": "INFO",
        "SUMFLOW_OTLP_ENDPOINT": otlp_endpoint,
        "SUMFLOW_INSTANCE": "observability-test",
        "OTEL_BSP_SCHEDULE_DELAY": "300",  # export spans quickly so the test need not wait 5 s
    }
    adder_env = {
        **common,
        "SUMFLOW_GRPC_LISTEN": f"127.0.0.1:{grpc_port}",
        "SUMFLOW_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        "SUMFLOW_DEDUPE_DIR": str(workdir / "dedupe"),
    }
    accumulator_env = {
        **common,
        "SUMFLOW_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "SUMFLOW_STATE_DIR": str(workdir / "state"),
        "SUMFLOW_DLQ_TOPIC": dlq_topic,
        "SUMFLOW_CONSUMER_GROUP": f"obs-{topic}",
    }
    adder_log, accumulator_log = workdir / "adder.log", workdir / "accumulator.log"
    procs: list[subprocess.Popen] = []
    try:
        with accumulator_log.open("wb") as out:
            accumulator = [BIN / "sumflow-accumulator"]
            procs.append(subprocess.Popen(accumulator, env=accumulator_env, stdout=out, stderr=subprocess.STDOUT))
        with adder_log.open("wb") as out:
            procs.append(subprocess.Popen([BIN / "sumflow-adder"], env=adder_env, stdout=out, stderr=subprocess.STDOUT))
        _wait(f"http://127.0.0.1:{http_port}/readyz", procs[0], accumulator_log, 90)
        _wait(f"http://127.0.0.1:{metrics_port}/metrics", procs[1], adder_log, 90)
        yield RunningServices(
            grpc_target=f"127.0.0.1:{grpc_port}",
            adder_metrics=f"127.0.0.1:{metrics_port}",
            accumulator_http=f"127.0.0.1:{http_port}",
            adder_log=adder_log,
            accumulator_log=accumulator_log,
        )
    finally:
        for proc in reversed(procs):
            _stop(proc)
