"""Summations of calls ready together share one Kafka record (service_layer/event_batcher.py).

The batcher on a real asyncio loop with the scripted publisher of test_adder_status_codes; then the
whole adder (real gRPC server, real diskcache store) with batching on: every accepted call's
summation is in exactly one acknowledged record, and a record Kafka refuses fails all of its calls,
which then retry with their own ids.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from sumflow.adapters.adder_ports import PublishFailed
from sumflow.adapters.dedupe_store import DedupeStore
from sumflow.adapters.event_publisher import Delivery
from sumflow.domain.events import decode_event
from sumflow.domain.summation import AddCommand, validate_add
from sumflow.entrypoints.adder_grpc_server import AdderGrpcServer
from sumflow.entrypoints.adder_servicer import SumServicer
from sumflow.observability.metrics import AdderMetrics
from sumflow.service_layer.add_numbers import AddNumbersHandler
from sumflow.service_layer.event_batcher import EventBatcher, GroupDelivery
from sumflow.v1 import sum_pb2_grpc
from tests.unit.test_adder_status_codes import Adder, ScriptedPublisher


def _cmds(n: int) -> list[AddCommand]:
    return [validate_add(str(uuid.uuid4()), i, 10 * i) for i in range(n)]


def _publish_in_one_turn(batcher: EventBatcher, cmds: list[AddCommand]) -> list[list[PublishFailed | None]]:
    """Publish `cmds` from one coroutine step; each delivery's outcomes once the loop has run on."""

    async def run() -> list[list[PublishFailed | None]]:
        outcomes: list[list[PublishFailed | None]] = [[] for _ in cmds]
        for cmd, seen in zip(cmds, outcomes, strict=True):
            batcher.publish(cmd).on_resolved(seen.append)
        for _ in range(100):  # let the loop run the flushes (and the acknowledgements they wait for)
            if all(outcomes):
                break
            await asyncio.sleep(0)
        return outcomes

    return asyncio.run(run())


def _summations(value: bytes) -> list[tuple[str, int, int, int]]:
    return [(e.request_id, e.first_number, e.second_number, e.result) for e in decode_event(value)]


def test_calls_of_one_turn_share_one_v2_record_and_its_acknowledgement() -> None:
    publisher = ScriptedPublisher()
    cmds = _cmds(5)
    outcomes = _publish_in_one_turn(EventBatcher(publisher, max_events=128), cmds)
    assert len(publisher.sent) == 1
    key, value = publisher.sent[0]
    assert key == cmds[0].request_id.encode()
    assert value.startswith(b'{"v":2,')
    assert _summations(value) == [(c.request_id, c.first_number, c.second_number, c.result) for c in cmds]
    assert outcomes == [[None]] * 5  # each call saw the record's acknowledgement, once


def test_a_lone_call_is_a_v1_event() -> None:
    publisher = ScriptedPublisher()
    (cmd,) = _cmds(1)
    assert _publish_in_one_turn(EventBatcher(publisher, max_events=128), [cmd]) == [[None]]
    ((key, value),) = publisher.sent
    assert key == cmd.request_id.encode() and value.startswith(b'{"v":1,')
    assert _summations(value) == [(cmd.request_id, 0, 0, 0)]


def test_a_full_record_goes_at_once() -> None:
    publisher = ScriptedPublisher()
    cmds = _cmds(7)
    _publish_in_one_turn(EventBatcher(publisher, max_events=3), cmds)
    assert [len(_summations(value)) for _key, value in publisher.sent] == [3, 3, 1]
    assert [s[0] for _k, v in publisher.sent for s in _summations(v)] == [c.request_id for c in cmds]


def test_summations_gather_while_two_records_wait_for_their_acknowledgement() -> None:
    publisher = ScriptedPublisher(mode="hold")
    batcher = EventBatcher(publisher, max_events=128, hold_seconds=3600)  # only acknowledgements free a slot
    a, b, c, d = _cmds(4)

    async def turns() -> list[int]:
        async def turn(*cmds: AddCommand) -> None:
            for cmd in cmds:
                batcher.publish(cmd)
            for _ in range(5):
                await asyncio.sleep(0)

        sizes = []
        await turn(a)
        await turn(b)
        await turn(c, d)
        sizes.append(len(publisher.sent))  # a and b are in flight: c and d wait
        publisher.held[0]._acked(None)  # Kafka acknowledges a's record
        for _ in range(5):
            await asyncio.sleep(0)
        sizes.append(len(publisher.sent))
        return sizes

    assert asyncio.run(turns()) == [2, 3]
    assert [[s[0] for s in _summations(v)] for _k, v in publisher.sent] == [
        [a.request_id],
        [b.request_id],
        [c.request_id, d.request_id],
    ]


def test_records_keep_flowing_when_kafka_does_not_answer() -> None:
    """Records Kafka never resolves (a wedged producer) free their slot after `hold_seconds`."""
    publisher = ScriptedPublisher(mode="hold")
    batcher = EventBatcher(publisher, max_events=128, hold_seconds=0)
    cmds = _cmds(5)

    async def turns() -> int:
        for cmd in cmds:
            batcher.publish(cmd)
            for _ in range(5):  # the flush, then the hold timer (0 s: the next turns of the loop)
                await asyncio.sleep(0)
        return len(publisher.sent)

    assert asyncio.run(turns()) == 5  # one record each: nothing waited for an acknowledgement


def test_a_refused_record_fails_every_call_in_it() -> None:
    publisher = ScriptedPublisher(mode="fail")
    outcomes = _publish_in_one_turn(EventBatcher(publisher, max_events=128), _cmds(4))
    assert len(publisher.sent) == 1
    assert all(len(seen) == 1 and isinstance(seen[0], PublishFailed) for seen in outcomes)
    assert {seen[0].reason for seen in outcomes} == {"timeout"}  # type: ignore[union-attr]


def test_a_publisher_that_raises_fails_the_calls_instead_of_losing_them() -> None:
    class Broken:
        def publish(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> Delivery:
            raise RuntimeError("bug")

    outcomes = _publish_in_one_turn(EventBatcher(Broken(), max_events=128), _cmds(2))
    assert all(len(seen) == 1 and isinstance(seen[0], PublishFailed) for seen in outcomes)


def test_a_call_whose_callback_raises_does_not_keep_the_others_of_its_record_waiting() -> None:
    delivery = GroupDelivery()
    seen: list[PublishFailed | None] = []

    def broken(_error: PublishFailed | None) -> None:
        raise RuntimeError("a bug in one call's completion")

    delivery.on_resolved(broken)
    delivery.on_resolved(seen.append)
    record = Delivery()
    delivery.follow(record)
    record._acked(None)  # Kafka's acknowledgement of the record
    assert seen == [None]
    assert delivery.latency_seconds == record.resolved_at - record.sent_at >= 0


def test_max_events_below_two_is_refused() -> None:
    with pytest.raises(ValueError):
        EventBatcher(ScriptedPublisher(), max_events=1)


@pytest.fixture
def batching_adder(tmp_path: Path) -> Iterator[Adder]:
    store = DedupeStore(tmp_path / "dedupe", ttl_seconds=3600, size_limit_bytes=1 << 22)
    publisher = ScriptedPublisher(delay=0.005)  # acks arrive from another thread, as Kafka's do
    registry = CollectorRegistry()
    metrics = AdderMetrics(registry)
    handler = AddNumbersHandler(
        store,
        publisher,
        topic="summation",
        publish_timeout_seconds=2.0,
        pending_timeout_seconds=30.0,
        metrics=metrics,
        publish_batch_max=16,
    )
    server = AdderGrpcServer(SumServicer(handler, metrics=metrics), listen="127.0.0.1:0", workers=16, reuse_port=False)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield Adder(sum_pb2_grpc.SumServiceStub(channel), publisher, store, registry)
    channel.close()
    server.stop(0)
    store.close()


def test_every_accepted_call_is_in_exactly_one_record(batching_adder: Adder) -> None:
    ids = [str(uuid.uuid4()) for _ in range(200)]
    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(lambda i: batching_adder.add(ids[i], i, 1), range(len(ids))))
    assert [(r.request_id, r.result, r.duplicate) for r in replies] == [
        (rid, i + 1, False) for i, rid in enumerate(ids)
    ]
    published = [s for _key, value in batching_adder.publisher.sent for s in _summations(value)]
    assert sorted(published) == sorted((rid, i, 1, i + 1) for i, rid in enumerate(ids))
    assert all(len(_summations(value)) <= 16 for _key, value in batching_adder.publisher.sent)
    # Repeats are answered from the store: nothing more is published.
    sent = len(batching_adder.publisher.sent)
    assert batching_adder.add(ids[7], 7, 1).duplicate
    assert len(batching_adder.publisher.sent) == sent


def test_calls_of_a_refused_record_are_unavailable_and_retry_with_their_ids(batching_adder: Adder) -> None:
    batching_adder.publisher.mode = "fail"
    ids = [str(uuid.uuid4()) for _ in range(20)]

    def code(i: int) -> grpc.StatusCode:
        return batching_adder.code_of(ids[i], i, 2)

    with ThreadPoolExecutor(20) as pool:
        assert set(pool.map(code, range(len(ids)))) == {grpc.StatusCode.UNAVAILABLE}
    batching_adder.publisher.mode = "ack"
    failed = len(batching_adder.publisher.sent)
    assert [batching_adder.add(rid, i, 2).duplicate for i, rid in enumerate(ids)] == [False] * len(ids)
    retried = [s for _k, v in batching_adder.publisher.sent[failed:] for s in _summations(v)]
    assert sorted(retried) == sorted((rid, i, 2, i + 2) for i, rid in enumerate(ids))
