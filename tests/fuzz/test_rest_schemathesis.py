"""schemathesis against the real accumulator process: every operation of /api/openapi.json with
generated (valid and invalid) parameters; no 5xx, every response conforms to the document."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from harness.kafka import unique_topic
from harness.processes import AccumulatorProcess


@pytest.fixture(scope="module")
def accumulator(kafka_broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccumulatorProcess]:
    tmp: Path = tmp_path_factory.mktemp("rest-fuzz")
    topic = kafka_broker.create_topic(unique_topic("rest"), partitions=2)
    dlq = kafka_broker.create_topic(unique_topic("rest-dlq"), partitions=1)
    proc = AccumulatorProcess.for_broker(kafka_broker.bootstrap, topic, tmp, dlq_topic=dlq)
    proc.start()
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    for i in range(30):  # some history, so /api/summations has rows to render
        doc = {"v": 1, "request_id": str(uuid.uuid4()), "first_number": i, "second_number": -(2**62),
               "result": i - 2**62, "produced_at_ms": int(time.time() * 1000)}  # fmt: skip
        producer.send(topic, orjson.dumps(doc))
    producer.close(10)
    proc.wait_applied(30)
    yield proc
    assert proc.is_alive(), proc.log_tail()
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def operations(accumulator: AccumulatorProcess) -> list:
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{accumulator.http_port}/api/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in found} >= {"/api/total", "/api/summations", "/readyz"}
    return found


# schemathesis' own pytest plugin does not work under pytest 9: draw its cases through hypothesis
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_no_5xx_and_every_response_matches_the_document(operations, data):
    operation = data.draw(st.sampled_from(operations))
    case = data.draw(operation.as_strategy())
    response = case.call_and_validate(timeout=10)
    assert response.status_code < 500
