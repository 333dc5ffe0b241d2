"""The benchmark's floor server (benchmarks/floor_adder.py) does the mandated work it claims to do.

BENCHMARKS.md bounds the adder by this server's calls/s, so it must really do, per call, one
persistent diskcache claim, one acknowledged Kafka event and one stored answer: checked here on a real
broker, by reading the topic and the diskcache directory after the calls.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import diskcache
import grpc

from harness.kafka import KafkaBroker
from harness.ports import free_port
from harness.processes import CommandProcess
from harness.topics import read_events
from sumflow.v1 import sum_pb2, sum_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


def _answers(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=1)
        except grpc.FutureTimeoutError:
            return False
    return True


def test_each_call_claims_publishes_an_acknowledged_event_and_stores_the_answer(
    kafka_broker: KafkaBroker, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory(prefix="floor")
    target = f"127.0.0.1:{free_port()}"
    state = tmp_path / "dedupe"
    argv = [sys.executable, "-m", "benchmarks.floor_adder", "--listen", target]
    argv += ["--bootstrap", kafka_broker.bootstrap, "--topic", topic, "--dir", str(state)]
    calls = {str(uuid.uuid4()): (n, 2 * n + 1) for n in range(25)}
    server = CommandProcess("floor", argv, tmp_path, ready=lambda: _answers(target), cwd=REPO)
    with server.running(timeout=60), grpc.insecure_channel(target) as channel:
        stub = sum_pb2_grpc.SumServiceStub(channel)
        for rid, (a, b) in calls.items():
            reply = stub.AddNumbers(
                sum_pb2.AddNumbersRequest(request_id=rid, first_number=a, second_number=b), timeout=10
            )
            assert (reply.request_id, reply.result) == (rid, a + b)
        # The answer is stored after the reply (group commit): read it while the server runs.
        expected = {rid: (a, b, a + b, "done") for rid, (a, b) in calls.items()}
        deadline = time.monotonic() + 10
        with diskcache.Cache(str(state)) as cache:
            while (stored := {rid: cache.get(rid) for rid in calls}) != expected and time.monotonic() < deadline:
                time.sleep(0.05)
        assert stored == expected

    events = read_events(kafka_broker.bootstrap, topic)
    assert sorted((e["request_id"], e["result"]) for e in events) == sorted(
        (rid, a + b) for rid, (a, b) in calls.items()
    )
