"""`sumflow-adder` as a real process on the real broker: health, reflection, metrics, SIGTERM,
de-duplication that survives a restart, and the multi-process mode (SO_REUSEPORT workers)."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from harness.processes import AdderProcess
from sumflow.v1 import sum_pb2, sum_pb2_grpc


@pytest.fixture
def new_adder(kafka_broker, topic: str, tmp_path: Path) -> Iterator:
    """new_adder(name, **settings): an adder on the session broker's `topic`, not started; every one
    shares the de-dupe directory and is killed at the end."""
    started: list[AdderProcess] = []

    def make(name: str, **settings: str) -> AdderProcess:
        adder = AdderProcess.for_broker(
            kafka_broker.bootstrap,
            topic,
            tmp_path / name,
            dedupe_dir=tmp_path / "dedupe",
            SUMFLOW_GRPC_WORKERS="8",
            **settings,
        )
        started.append(adder)
        return adder

    yield make
    for adder in started:
        adder.kill()


def test_serves_health_reflection_metrics_and_stops_cleanly_on_sigterm(new_adder) -> None:
    adder = new_adder("adder", SUMFLOW_ACCESS_LOG="all")
    adder.start()

    reflect = reflection_pb2_grpc.ServerReflectionStub(adder.client.channel)
    answers = list(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"sumflow.v1.SumService", "grpc.health.v1.Health"} <= names

    rid = str(uuid.uuid4())
    assert adder.add(rid, 2, 2).result == 4
    text = adder.metrics()
    assert 'sumflow_grpc_requests_total{code="OK",method="sumflow.v1.SumService/AddNumbers"} 1.0' in text
    assert 'sumflow_adder_dedupe_lookups_total{outcome="new"} 1.0' in text
    assert "process_resident_memory_bytes" in text

    assert adder.stop() == 0
    lines = adder.log_lines()
    call = next(line for line in lines if line.get("msg") == "AddNumbers")
    assert call["request_id"] == rid
    assert call["code"] == "OK"
    assert call["outcome"] == "new"
    assert call["service"] == "adder"
    assert isinstance(call["duration_ms"], float)
    assert any(line.get("msg") == "adder stopped" for line in lines)


def test_dedupe_survives_a_restart(new_adder) -> None:
    rid = str(uuid.uuid4())
    adder = new_adder("adder")
    adder.start()
    assert adder.add(rid, 10, 20).duplicate is False
    assert adder.stop() == 0

    adder.start()  # a new process on the same ports and de-dupe directory
    again = adder.add(rid, 10, 20)
    assert (again.result, again.duplicate) == (30, True)
    assert 'sumflow_adder_dedupe_lookups_total{outcome="duplicate"} 1.0' in adder.metrics()
    assert adder.stop() == 0


def test_several_processes_share_the_port_and_a_dead_worker_is_replaced(new_adder) -> None:
    adder = new_adder("multi", SUMFLOW_ADDER_PROCESSES="2")
    adder.start()
    # health answers as soon as one worker serves; the supervisor logs the workers once all are up
    ready = adder.wait_for_log_line(lambda line: line.get("processes") == 2)
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
    adder.wait_for_log_line(lambda line: line.get("msg") == "worker died: restarting it")
    replies = [adder.add(str(uuid.uuid4()), 1, 1) for _ in range(5)]  # the other worker keeps serving
    assert all(r.result == 2 for r in replies)
    assert adder.stop() == 0
