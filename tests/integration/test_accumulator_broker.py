"""The accumulator against a real KRaft broker (fixtures from tests/conftest.py), run in-process.

Events are produced with kafka-python exactly as the adder writes them; the total is read over HTTP.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from harness.http_client import http_get
from sumflow.config import load_accumulator_config
from sumflow.entrypoints.accumulator_server import Accumulator, build
from sumflow.observability.tracing import kafka_headers, setup_tracing
from tests.fixtures.event_records import event_value


class Env:
    def __init__(self, broker, topic: str, dlq: str, state_dir: Path) -> None:
        self.bootstrap = broker.bootstrap
        self.topic = topic
        self.dlq = dlq
        self.state_dir = state_dir
        self.producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        self.running: Accumulator | None = None

    def config(self, **extra: str):
        return load_accumulator_config(
            {
                "SUMFLOW_KAFKA_BOOTSTRAP": self.bootstrap,
                "SUMFLOW_TOPIC": self.topic,
                "SUMFLOW_DLQ_TOPIC": self.dlq,
                "SUMFLOW_STATE_DIR": str(self.state_dir),
                "SUMFLOW_HTTP_LISTEN": "127.0.0.1:0",
                "SUMFLOW_CONSUMER_GROUP": f"g-{self.topic}",
                "SUMFLOW_HTTP_THREADS": "2",
                **extra,
            }
        )

    def start(self, tracer=None, **extra: str) -> Accumulator:
        acc = build(self.config(**extra), tracer=tracer)
        acc.start()
        self.running = acc
        self.wait_ready()
        return acc

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None

    def get(self, path: str) -> tuple[int, bytes]:
        assert self.running is not None
        return http_get(f"http://127.0.0.1:{self.running.http_port}{path}")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get("/readyz")[0] == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"not ready: {self.get('/readyz')}")

    def total(self) -> dict:
        status, body = self.get("/api/total")
        assert status == 200
        return json.loads(body)

    def wait_applied(self, applied: int, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        doc = self.total()
        while doc["applied"] < applied and time.monotonic() < deadline:
            time.sleep(0.05)
            doc = self.total()
        return doc

    def send(self, value: bytes | None, key: bytes | None = None, partition: int | None = None, headers=None) -> None:
        self.producer.send(self.topic, value=value, key=key, partition=partition, headers=headers or [])

    def flush(self) -> None:
        self.producer.flush(30)


@pytest.fixture
def env(kafka_broker, topic_factory, tmp_path) -> Iterator[Env]:
    e = Env(kafka_broker, topic_factory(partitions=3, prefix="acc"), topic_factory(prefix="acc-dlq"), tmp_path / "s")
    yield e
    e.stop()
    e.producer.close(5)


def test_events_in_the_topic_come_out_in_the_total(env):
    acc = env.start()
    expected = 0
    ids = []
    for i in range(600):
        rid = str(uuid.uuid4())
        ids.append(rid)
        first, second = i * 7 - 1000, 2**40 + i
        expected += first + second
        env.send(event_value(rid, first, second), key=rid.encode())
    env.flush()
    assert env.wait_applied(600) == {"total": expected, "applied": 600}
    status, body = env.get("/api/summations?limit=5")
    assert status == 200
    newest = json.loads(body)["summations"]
    assert len(newest) == 5 and all(item["request_id"] in ids for item in newest)
    status, final = env.get("/api/final")
    assert final == str(expected).encode()
    total_file = json.loads((env.state_dir / "total.json").read_bytes())
    assert (total_file["total"], total_file["applied"]) == (expected, 600)
    metrics = env.get("/metrics")[1].decode()
    assert "sumflow_accumulator_events_applied_total 600.0" in metrics
    assert 'sumflow_accumulator_consumer_lag{partition="2"} 0.0' in metrics
    assert acc.metrics is not None


def test_duplicate_request_id_is_applied_once(env):
    env.start()
    rid = str(uuid.uuid4())
    env.send(event_value(rid, 5, 6), partition=0)
    env.send(event_value(rid, 5, 6), partition=1)  # adder crashed after the ack; the client retried
    env.send(event_value(str(uuid.uuid4()), 1, 1), partition=2)
    env.flush()
    doc = env.wait_applied(2)
    time.sleep(0.5)  # let the duplicate arrive if it were going to be counted
    assert env.total() == doc == {"total": 13, "applied": 2}
    assert "sumflow_accumulator_duplicates_dropped_total 1.0" in env.get("/metrics")[1].decode()


def test_invalid_records_go_to_the_dlq_with_reason_and_consumption_continues(env):
    env.start()
    rid = str(uuid.uuid4())
    bad = [
        (b"{not json", "value is not valid JSON"),
        (orjson.dumps({"v": 1, "request_id": rid, "first_number": 1}), "missing field second_number"),
        (
            orjson.dumps(
                {"v": 1, "request_id": rid, "first_number": "1", "second_number": 2, "result": 3, "produced_at_ms": 1}
            ),
            "field first_number must be an integer",
        ),
        (event_value(rid, 1, 2, result=4), "result is not first_number + second_number"),
        (None, "empty record value"),
    ]
    for value, _ in bad:
        env.send(value, key=b"k-" + rid.encode(), partition=0, headers=[("x-origin", b"test")])
    env.send(event_value(str(uuid.uuid4()), 20, 22), partition=0)
    env.flush()
    assert env.wait_applied(1) == {"total": 42, "applied": 1}

    consumer = KafkaConsumer(bootstrap_servers=env.bootstrap, auto_offset_reset="earliest", group_id=None)
    tp = TopicPartition(env.dlq, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = []
    deadline = time.monotonic() + 20
    while len(got) < len(bad) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
    consumer.close()
    assert len(got) == len(bad)
    for record, (value, reason) in zip(got, bad, strict=True):
        headers = dict(record.headers)
        assert headers["dlq.reason"].decode() == reason
        assert headers["dlq.source.partition"] == b"0"
        assert headers["x-origin"] == b"test"
        assert record.key == b"k-" + rid.encode()
        assert record.value == value  # None stays None: the record has a key
    offsets = [int(dict(r.headers)["dlq.source.offset"]) for r in got]
    assert offsets == list(range(len(bad)))
    metrics = env.get("/metrics")[1].decode()
    assert 'sumflow_accumulator_dlq_events_total{reason="invalid_json"} 1.0' in metrics


def test_restart_resumes_exactly_whatever_kafka_committed_offsets_say(env):
    env.start()
    expected = 0
    for i in range(300):
        env.send(event_value(str(uuid.uuid4()), i, 1))
        expected += i + 1
    env.flush()
    assert env.wait_applied(300)["total"] == expected
    env.stop()
    # at shutdown the group is told our position (for lag tools) by its own committing consumer
    probe = KafkaConsumer(bootstrap_servers=env.bootstrap, group_id=f"g-{env.topic}", enable_auto_commit=False)
    committed = [probe.committed(TopicPartition(env.topic, p)) for p in range(3)]
    probe.close()
    assert sum(c or 0 for c in committed) == 300

    # rewind the group's committed offsets to 0: a consumer trusting them would count everything twice
    rewind = KafkaConsumer(bootstrap_servers=env.bootstrap, group_id=f"g-{env.topic}", enable_auto_commit=False)
    rewind.commit({TopicPartition(env.topic, p): OffsetAndMetadata(0, "", -1) for p in range(3)})
    rewind.close()
    for i in range(300, 450):  # produced while the accumulator is down
        env.send(event_value(str(uuid.uuid4()), i, 1))
        expected += i + 1
    env.flush()
    env.start()
    doc = env.wait_applied(450)
    time.sleep(0.5)
    assert env.total() == doc == {"total": expected, "applied": 450}
    assert "sumflow_accumulator_redeliveries_total 0.0" in env.get("/metrics")[1].decode()


def test_one_trace_per_request_through_kafka(env):
    exporter = InMemorySpanExporter()
    tracer = setup_tracing("accumulator", None, exporter=exporter)
    upstream = TracerProvider()
    upstream.add_span_processor(SimpleSpanProcessor(exporter))
    producer_tracer = upstream.get_tracer("test.adder")
    env.start(tracer=tracer)
    rid = str(uuid.uuid4())
    with producer_tracer.start_as_current_span("kafka send", kind=SpanKind.PRODUCER) as send_span:
        env.send(event_value(rid, 2, 3), headers=kafka_headers())
    env.flush()
    assert env.wait_applied(1)["total"] == 5
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(s.name == "ledger commit" for s in exporter.get_finished_spans()):
        time.sleep(0.05)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    process, commit = spans["summation process"], spans["ledger commit"]
    trace_id = send_span.get_span_context().trace_id
    assert process.context.trace_id == commit.context.trace_id == trace_id
    assert process.parent.span_id == send_span.get_span_context().span_id
    assert process.kind == SpanKind.CONSUMER
    assert process.attributes["sumflow.request_id"] == rid
    assert commit.parent.span_id == process.context.span_id
