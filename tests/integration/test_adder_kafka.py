"""The adder in-process against the real broker: the event on the topic, de-duplication, tracing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from kafka import KafkaConsumer, TopicPartition
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

from sumflow.config import load_adder_config
from sumflow.domain.events import decode_event
from sumflow.entrypoints.adder_app import AdderApp, build_adder
from sumflow.v1 import sum_pb2, sum_pb2_grpc


def read_topic(bootstrap: str, topic: str, expect_at_least: int, timeout_s: float = 20.0) -> list:
    """All records on the topic (every partition, from the start), once at least `expect_at_least`."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list = []
        give_up = time.monotonic() + timeout_s
        while time.monotonic() < give_up:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            done = all(consumer.position(tp) >= ends[tp] for tp in partitions)
            if done and len(records) >= expect_at_least:
                break
            if done:
                ends = consumer.end_offsets(partitions)
        return records
    finally:
        consumer.close()


@dataclass
class InProcessAdder:
    app: AdderApp
    stub: sum_pb2_grpc.SumServiceStub
    spans: InMemorySpanExporter
    bootstrap: str
    topic: str

    def add(self, rid: str, a: int, b: int, timeout: float = 10.0) -> sum_pb2.AddNumbersResponse:
        request = sum_pb2.AddNumbersRequest(request_id=rid, first_number=a, second_number=b)
        return self.stub.AddNumbers(request, timeout=timeout)


@pytest.fixture
def adder(kafka_broker, topic: str, tmp_path: Path) -> Iterator[InProcessAdder]:
    cfg = load_adder_config(
        {
            "SUMFLOW_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
            "SUMFLOW_TOPIC": topic,
            "SUMFLOW_GRPC_LISTEN": "127.0.0.1:0",
            "SUMFLOW_DEDUPE_DIR": str(tmp_path / "dedupe"),
            "SUMFLOW_GRPC_WORKERS": "16",
        }
    )
    spans = InMemorySpanExporter()
    app = build_adder(cfg, registry=CollectorRegistry(), serve_metrics=False, span_exporter=spans)
    app.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}")
    yield InProcessAdder(app, sum_pb2_grpc.SumServiceStub(channel), spans, kafka_broker.bootstrap, topic)
    channel.close()
    app.stop(grace_seconds=2.0)


def test_event_on_the_topic_carries_json_key_and_trace_context(adder: InProcessAdder) -> None:
    rid = str(uuid.uuid4())
    reply = adder.add(rid.upper(), 19, 23)
    assert (reply.request_id, reply.result, reply.duplicate) == (rid, 42, False)

    records = read_topic(adder.bootstrap, adder.topic, expect_at_least=1)
    assert len(records) == 1
    record = records[0]
    assert record.key == rid.encode()
    (event,) = decode_event(record.value)
    assert (event.request_id, event.first_number, event.second_number, event.result) == (rid, 19, 23, 42)
    assert event.produced_at_ms > 0
    headers = dict(record.headers)
    traceparent = headers["traceparent"].decode()
    _version, trace_id, parent_span_id, _flags = traceparent.split("-")

    spans = {span.name: span for span in adder.spans.get_finished_spans()}
    server = spans["sumflow.v1.SumService/AddNumbers"]
    producer = spans[f"{adder.topic} publish"]
    assert server.kind is SpanKind.SERVER
    assert producer.kind is SpanKind.PRODUCER
    assert producer.parent is not None
    assert producer.parent.span_id == server.context.span_id
    assert format(server.context.trace_id, "032x") == trace_id
    assert format(producer.context.span_id, "016x") == parent_span_id
    assert server.attributes["request_id"] == rid
    assert server.attributes["result"] == 42
    assert server.attributes["duplicate"] is False
    assert producer.attributes["messaging.destination.name"] == adder.topic

    exposition = generate_latest(adder.app.services.registry).decode()  # OpenMetrics: exemplars included
    assert f'trace_id="{trace_id}"' in exposition


def test_repeats_and_concurrent_calls_publish_one_event(adder: InProcessAdder) -> None:
    rid = str(uuid.uuid4())
    with ThreadPoolExecutor(max_workers=50) as pool:
        replies = list(pool.map(lambda _: adder.add(rid, 5, 8), range(50)))
    assert all(r.result == 13 for r in replies)
    assert sum(not r.duplicate for r in replies) == 1
    again = adder.add(rid, 5, 8)
    assert again.duplicate is True
    with pytest.raises(grpc.RpcError) as conflict:
        adder.add(rid, 5, 9)
    assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS

    other = str(uuid.uuid4())
    adder.add(other, 1, 1)  # a second event after the first: the topic is complete once it is there
    records = read_topic(adder.bootstrap, adder.topic, expect_at_least=2)
    keys = [r.key for r in records]
    assert keys.count(rid.encode()) == 1
    assert keys.count(other.encode()) == 1
    assert len(records) == 2


def test_many_distinct_requests_each_publish_exactly_once(adder: InProcessAdder) -> None:
    ids = [str(uuid.uuid4()) for _ in range(200)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(lambda i: adder.add(ids[i], i, 1000), range(len(ids))))
    assert [r.result for r in replies] == [i + 1000 for i in range(len(ids))]
    # Calls ready together share a record (v2, docs/events.md): count summations, not records. Every
    # call was acknowledged before its reply, so every record is below the end offsets now.
    records = read_topic(adder.bootstrap, adder.topic, expect_at_least=1)
    decoded = [(r.key.decode(), decode_event(r.value)) for r in records]
    assert all(events[0].request_id == key for key, events in decoded)  # keyed by its first summation
    published = [e for _key, events in decoded for e in events]
    assert sorted((e.request_id, e.result) for e in published) == sorted((rid, i + 1000) for i, rid in enumerate(ids))
