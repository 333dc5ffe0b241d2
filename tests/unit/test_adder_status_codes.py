"""The adder's gRPC status-code mapping and de-dupe flow, over a real gRPC server on loopback and a
real diskcache store. The Kafka publisher is a scripted stand-in here (the only place one is used):
the real producer is covered by tests/integration/test_adder_*.py on a real broker.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from kafka import errors as kafka_errors
from prometheus_client import CollectorRegistry

from sumflow.adapters.dedupe_store import DedupeStore
from sumflow.adapters.event_publisher import Delivery
from sumflow.domain.events import decode_event
from sumflow.domain.idempotency import DedupeRecord
from sumflow.domain.summation import AddCommand
from sumflow.entrypoints.adder_grpc_server import AdderGrpcServer
from sumflow.entrypoints.adder_servicer import SumServicer
from sumflow.observability.metrics import AdderMetrics
from sumflow.service_layer.add_numbers import AddNumbersHandler
from sumflow.v1 import sum_pb2, sum_pb2_grpc


@dataclass
class ScriptedPublisher:
    """Answers each publish as told by `mode`: ack, fail, or hold (resolved later by the test)."""

    mode: str = "ack"
    delay: float = 0.0
    sent: list[tuple[bytes, bytes]] = field(default_factory=list)
    held: list[Delivery] = field(default_factory=list)

    def publish(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> Delivery:
        self.sent.append((key, value))
        delivery = Delivery()
        if self.mode == "ack":
            if self.delay:
                threading.Timer(self.delay, delivery._acked, args=(None,)).start()
            else:
                delivery._acked(None)
        elif self.mode == "fail":
            delivery._failed(kafka_errors.KafkaTimeoutError("Batch expired"))
        else:
            self.held.append(delivery)
        return delivery


@dataclass
class Adder:
    stub: sum_pb2_grpc.SumServiceStub
    publisher: ScriptedPublisher
    store: DedupeStore
    registry: CollectorRegistry

    def add(self, rid: str, a: int, b: int, timeout: float = 5.0) -> sum_pb2.AddNumbersResponse:
        return self.stub.AddNumbers(
            sum_pb2.AddNumbersRequest(request_id=rid, first_number=a, second_number=b), timeout=timeout
        )

    def code_of(self, rid: str, a: int, b: int, timeout: float = 5.0) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as info:
            self.add(rid, a, b, timeout)
        assert info.value.details()
        return info.value.code()

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def adder(tmp_path: Path) -> Iterator[Adder]:
    store = DedupeStore(tmp_path / "dedupe", ttl_seconds=3600, size_limit_bytes=1 << 22)
    publisher = ScriptedPublisher()
    registry = CollectorRegistry()
    metrics = AdderMetrics(registry)
    handler = AddNumbersHandler(
        store,
        publisher,
        topic="summation",
        publish_timeout_seconds=2.0,
        pending_timeout_seconds=30.0,
        metrics=metrics,
    )
    server = AdderGrpcServer(SumServicer(handler, metrics=metrics), listen="127.0.0.1:0", workers=16, reuse_port=False)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield Adder(sum_pb2_grpc.SumServiceStub(channel), publisher, store, registry)
    channel.close()
    server.stop(0)
    for delivery in publisher.held:
        delivery._acked(None)
    store.close()


def test_new_request_publishes_one_event_and_answers(adder: Adder) -> None:
    rid = str(uuid.uuid4()).upper()
    reply = adder.add(rid, 40, 2)
    assert (reply.request_id, reply.result, reply.duplicate) == (rid.lower(), 42, False)
    assert len(adder.publisher.sent) == 1
    key, value = adder.publisher.sent[0]
    assert key == rid.lower().encode()
    (event,) = decode_event(value)
    assert (event.request_id, event.first_number, event.second_number, event.result) == (rid.lower(), 40, 2, 42)


def test_repeat_returns_the_stored_answer_and_publishes_nothing(adder: Adder) -> None:
    rid = str(uuid.uuid4())
    adder.add(rid, 1, 2)
    again = adder.add(rid.upper(), 1, 2)
    assert (again.result, again.duplicate) == (3, True)
    assert len(adder.publisher.sent) == 1
    assert adder.metric("sumflow_adder_dedupe_lookups_total", outcome="duplicate") == 1


@pytest.mark.parametrize(
    ("rid", "a", "b", "code"),
    [
        ("", 1, 2, grpc.StatusCode.INVALID_ARGUMENT),
        ("not-a-uuid", 1, 2, grpc.StatusCode.INVALID_ARGUMENT),
        ("{" + str(uuid.UUID(int=7)) + "}", 1, 2, grpc.StatusCode.INVALID_ARGUMENT),
        (str(uuid.UUID(int=8)), 2**63 - 1, 1, grpc.StatusCode.OUT_OF_RANGE),
        (str(uuid.UUID(int=9)), -(2**63), -1, grpc.StatusCode.OUT_OF_RANGE),
    ],
)
def test_client_errors_map_to_their_codes(adder: Adder, rid: str, a: int, b: int, code: grpc.StatusCode) -> None:
    assert adder.code_of(rid, a, b) == code
    assert adder.publisher.sent == []
    assert adder.metric("sumflow_grpc_requests_total", method="sumflow.v1.SumService/AddNumbers", code=code.name) == 1


def test_same_id_with_other_numbers_is_already_exists(adder: Adder) -> None:
    rid = str(uuid.uuid4())
    adder.add(rid, 1, 2)
    assert adder.code_of(rid, 1, 3) == grpc.StatusCode.ALREADY_EXISTS
    assert len(adder.publisher.sent) == 1


def test_unacknowledged_publish_is_unavailable_and_a_retry_publishes(adder: Adder) -> None:
    rid = str(uuid.uuid4())
    adder.publisher.mode = "fail"
    assert adder.code_of(rid, 5, 6) == grpc.StatusCode.UNAVAILABLE
    assert adder.store.get(rid) is None  # nothing recorded
    assert adder.metric("sumflow_kafka_produce_errors_total", reason="timeout") == 1
    adder.publisher.mode = "ack"
    reply = adder.add(rid, 5, 6)
    assert (reply.result, reply.duplicate) == (11, False)
    assert len(adder.publisher.sent) == 2


def test_deadline_before_ack_is_deadline_exceeded_and_the_late_ack_is_kept(adder: Adder) -> None:
    rid = str(uuid.uuid4())
    adder.publisher.mode = "hold"
    assert adder.code_of(rid, 7, 8, timeout=0.3) == grpc.StatusCode.DEADLINE_EXCEEDED
    # A retry while the first event is still in flight waits for it instead of publishing again.
    adder.publisher.mode = "ack"
    threading.Timer(0.3, adder.publisher.held[0]._acked, args=(None,)).start()
    reply = adder.add(rid, 7, 8)
    assert (reply.result, reply.duplicate) == (15, True)
    assert len(adder.publisher.sent) == 1


def test_call_cancelled_before_ack_leaves_the_outcome_to_the_delivery(adder: Adder) -> None:
    rid = str(uuid.uuid4())
    adder.publisher.mode = "hold"
    call = adder.stub.AddNumbers.future(
        sum_pb2.AddNumbersRequest(request_id=rid, first_number=5, second_number=6), timeout=30
    )
    deadline = time.monotonic() + 10
    while not adder.publisher.held and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(adder.publisher.held) == 1
    call.cancel()
    time.sleep(0.2)  # the server learns of the cancellation
    # The event is still in the producer: a retry waits for its outcome instead of publishing again.
    adder.publisher.mode = "ack"
    threading.Timer(0.3, adder.publisher.held[0]._acked, args=(None,)).start()
    reply = adder.add(rid, 5, 6)
    assert (reply.result, reply.duplicate) == (11, True)
    assert len(adder.publisher.sent) == 1
    assert adder.metric("sumflow_grpc_in_flight_requests") == 0


def test_concurrent_calls_with_one_id_publish_once(adder: Adder) -> None:
    rid = str(uuid.uuid4())
    adder.publisher.delay = 0.2
    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(lambda _: adder.add(rid, 3, 4, timeout=60), range(20)))
    assert len(adder.publisher.sent) == 1
    assert all(r.result == 7 for r in replies)
    assert sorted(r.duplicate for r in replies) == [False] + [True] * 19


def test_pending_record_of_a_dead_process_is_taken_over(adder: Adder) -> None:
    rid = str(uuid.uuid4())
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    orphan = DedupeRecord.pending(AddCommand(rid, 1, 1), "gone", dead_pid, time.time())
    assert adder.store.claim(rid, orphan)
    reply = adder.add(rid, 1, 1)
    assert (reply.result, reply.duplicate) == (2, False)
    assert len(adder.publisher.sent) == 1
    assert adder.metric("sumflow_adder_dedupe_lookups_total", outcome="takeover") == 1


def test_pending_record_of_a_live_owner_past_the_deadline_is_deadline_exceeded(adder: Adder) -> None:
    rid = str(uuid.uuid4())
    other = DedupeRecord.pending(AddCommand(rid, 1, 1), "other-process", 1, time.time())  # pid 1 is alive
    assert adder.store.claim(rid, other)
    started = time.monotonic()
    assert adder.code_of(rid, 1, 1, timeout=0.4) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 3
    assert adder.publisher.sent == []


def test_by_default_only_calls_answered_with_another_status_than_ok_are_logged(
    adder: Adder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sumflow.adder")
    rid = str(uuid.uuid4())
    adder.add(rid, 1, 2)
    adder.add(rid, 1, 2)  # a duplicate is answered OK too
    assert adder.code_of(rid, 1, 3) == grpc.StatusCode.ALREADY_EXISTS
    logged = [(r.request_id, r.code, r.outcome) for r in caplog.records if r.getMessage() == "AddNumbers"]
    assert logged == [(rid, "ALREADY_EXISTS", "conflict")]
