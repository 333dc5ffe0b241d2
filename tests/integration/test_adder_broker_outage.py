"""Kafka down -> UNAVAILABLE with nothing recorded; the same id succeeds once Kafka is back.

Uses its own broker (the session broker must never be stopped).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import grpc
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from harness.kafka import KafkaBroker, unique_topic
from sumflow.config import load_adder_config
from sumflow.entrypoints.adder_app import build_adder
from sumflow.v1 import sum_pb2, sum_pb2_grpc


def _keys_on(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        keys: list[bytes] = []
        give_up = time.monotonic() + 20
        while consumer.position(tp) < end and time.monotonic() < give_up:
            for batch in consumer.poll(timeout_ms=500).values():
                keys.extend(r.key for r in batch)
        return keys
    finally:
        consumer.close()


def test_broker_down_is_unavailable_and_a_retry_after_it_returns_succeeds(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    app = None
    try:
        topic = broker.create_topic(unique_topic("adder-outage"), partitions=1)
        cfg = load_adder_config(
            {
                "SUMFLOW_KAFKA_BOOTSTRAP": broker.bootstrap,
                "SUMFLOW_TOPIC": topic,
                "SUMFLOW_GRPC_LISTEN": "127.0.0.1:0",
                "SUMFLOW_DEDUPE_DIR": str(tmp_path / "dedupe"),
                "SUMFLOW_PUBLISH_TIMEOUT_SECONDS": "2",
                "SUMFLOW_PRODUCER_RETRIES": "3",
            }
        )
        registry = CollectorRegistry()
        app = build_adder(cfg, registry=registry, serve_metrics=False)
        app.start()
        stub = sum_pb2_grpc.SumServiceStub(grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}"))

        def add(rid: str, timeout: float = 15.0) -> sum_pb2.AddNumbersResponse:
            return stub.AddNumbers(
                sum_pb2.AddNumbersRequest(request_id=rid, first_number=4, second_number=5), timeout=timeout
            )

        before = str(uuid.uuid4())
        assert add(before).result == 9

        broker.stop()
        rid = str(uuid.uuid4())
        started = time.monotonic()
        try:
            add(rid)
            raise AssertionError("the call succeeded with Kafka down")
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            assert "retry" in (err.details() or "")
        assert time.monotonic() - started < 10  # bounded by the publish timeout, not the client's
        assert app.services.store.get(rid) is None  # nothing recorded
        assert (registry.get_sample_value("sumflow_kafka_produce_errors_total", {"reason": "timeout"}) or 0) >= 1

        broker.start()
        reply = None
        give_up = time.monotonic() + 60
        while reply is None and time.monotonic() < give_up:
            try:
                reply = add(rid)
            except grpc.RpcError as err:  # the producer may need a moment to reconnect
                assert err.code() == grpc.StatusCode.UNAVAILABLE, err
                time.sleep(0.5)
        assert reply is not None
        assert (reply.result, reply.duplicate) == (9, False)
        assert add(rid).duplicate is True

        keys = _keys_on(broker.bootstrap, topic)
        assert keys.count(rid.encode()) == 1
        assert keys.count(before.encode()) == 1
    finally:
        if app is not None:
            app.stop(grace_seconds=1.0)
        broker.stop()
