"""`sumflow-adder` as a real process on the real broker: health, reflection, metrics, SIGTERM,
de-duplication that survives a restart, and the multi-process mode (SO_REUSEPORT workers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sumflow.v1 import sum_pb2, sum_pb2_grpc

ADDER = Path(sys.executable).with_name("sumflow-adder")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AdderProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.grpc_port = int(env["SUMFLOW_GRPC_LISTEN"].rsplit(":", 1)[1])
        self.metrics_port = int(env["SUMFLOW_METRICS_LISTEN"].rsplit(":", 1)[1])
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None

    def start(self, timeout: float = 60.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([str(ADDER)], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        health = health_pb2_grpc.HealthStub(self.channel)
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                status = health.Check(health_pb2.HealthCheckRequest(service="sumflow.v1.SumService"), timeout=1)
                if status.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"adder not SERVING after {timeout}s:\n{self.log_path.read_text()}")

    def add(self, rid: str, a: int, b: int) -> sum_pb2.AddNumbersResponse:
        assert self.channel is not None
        request = sum_pb2.AddNumbersRequest(request_id=rid, first_number=a, second_number=b)
        return sum_pb2_grpc.SumServiceStub(self.channel).AddNumbers(request, timeout=15)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.channel is not None:
            self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_lines(self) -> list[dict]:
        lines = []
        for raw in self.log_path.read_text().splitlines():
            try:
                lines.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                continue
        return lines


@pytest.fixture
def adder_env(kafka_broker, topic: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUMFLOW_", "PROMETHEUS_", "NOTIFY_SOCKET"))}
    return env | {
        "SUMFLOW_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "SUMFLOW_TOPIC": topic,
        "SUMFLOW_GRPC_LISTEN": f"127.0.0.1:{_free_port()}",
        "SUMFLOW_METRICS_LISTEN": f"127.0.0.1:{_free_port()}",
        "SUMFLOW_DEDUPE_DIR": str(tmp_path / "dedupe"),
        "SUMFLOW_GRPC_WORKERS": "8",
    }


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[AdderProcess]]:
    started: list[AdderProcess] = []
    yield started
    for proc in started:
        proc.kill()


def test_serves_health_reflection_metrics_and_stops_cleanly_on_sigterm(
    adder_env: dict[str, str], tmp_path: Path, processes: list[AdderProcess]
) -> None:
    adder = AdderProcess({**adder_env, "SUMFLOW_ACCESS_LOG": "all"}, tmp_path / "adder.log")
    processes.append(adder)
    adder.start()

    assert adder.channel is not None
    reflect = reflection_pb2_grpc.ServerReflectionStub(adder.channel)
    answers = list(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"sumflow.v1.SumService", "grpc.health.v1.Health"} <= names

    rid = str(uuid.uuid4())
    assert adder.add(rid, 2, 2).result == 4
    text = adder.metrics()
    assert 'sumflow_grpc_requests_total{code="OK",method="sumflow.v1.SumService/AddNumbers"} 1.0' in text
    assert 'sumflow_adder_dedupe_lookups_total{outcome="new"} 1.0' in text
    assert "process_resident_memory_bytes" in text

    assert adder.terminate() == 0
    lines = adder.log_lines()
    call = next(line for line in lines if line.get("msg") == "AddNumbers")
    assert call["request_id"] == rid
    assert call["code"] == "OK"
    assert call["outcome"] == "new"
    assert call["service"] == "adder"
    assert isinstance(call["duration_ms"], float)
    assert any(line.get("msg") == "adder stopped" for line in lines)


def test_dedupe_survives_a_restart(adder_env: dict[str, str], tmp_path: Path, processes: list[AdderProcess]) -> None:
    rid = str(uuid.uuid4())
    first = AdderProcess(adder_env, tmp_path / "first.log")
    processes.append(first)
    first.start()
    assert first.add(rid, 10, 20).duplicate is False
    assert first.terminate() == 0

    second = AdderProcess(adder_env, tmp_path / "second.log")
    processes.append(second)
    second.start()
    again = second.add(rid, 10, 20)
    assert (again.result, again.duplicate) == (30, True)
    assert 'sumflow_adder_dedupe_lookups_total{outcome="duplicate"} 1.0' in second.metrics()
    assert second.terminate() == 0


def test_several_processes_share_the_port_and_a_dead_worker_is_replaced(
    adder_env: dict[str, str], tmp_path: Path, processes: list[AdderProcess]
) -> None:
    adder = AdderProcess(adder_env | {"SUMFLOW_ADDER_PROCESSES": "2"}, tmp_path / "multi.log")
    processes.append(adder)
    adder.start()
    ready = next(line for line in adder.log_lines() if line.get("processes") == 2)
    workers = ready["worker_pids"]
    assert len(workers) == 2

    ids = [str(uuid.uuid4()) for _ in range(12)]
    for i, rid in enumerate(ids):  # a fresh connection per call: the kernel spreads them
        channel = grpc.insecure_channel(f"127.0.0.1:{adder.grpc_port}", options=[("grpc.use_local_subchannel_pool", 1)])
        reply = sum_pb2_grpc.SumServiceStub(channel).AddNumbers(
            sum_pb2.AddNumbersRequest(request_id=rid, first_number=i, second_number=1), timeout=15
        )
        channel.close()
        assert reply.result == i + 1
    text = adder.metrics()
    assert 'sumflow_grpc_requests_total{code="OK",method="sumflow.v1.SumService/AddNumbers"} 12.0' in text

    os.kill(workers[0], signal.SIGKILL)
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        if any(line.get("msg") == "worker died: restarting it" for line in adder.log_lines()):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(adder.log_path.read_text())
    replies = [adder.add(str(uuid.uuid4()), 1, 1) for _ in range(5)]  # the other worker keeps serving
    assert all(r.result == 2 for r in replies)
    assert adder.terminate() == 0
