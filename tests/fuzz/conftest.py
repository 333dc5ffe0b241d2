"""Fixtures of the Kafka fuzz tests: an accumulator process on fresh topics of the session broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.kafka import unique_topic
from harness.processes import AccumulatorProcess


@pytest.fixture
def accumulator(kafka_broker, tmp_path: Path) -> Iterator[tuple[AccumulatorProcess, str, str]]:
    """A ready accumulator on a new 2-partition topic and its 1-partition DLQ: (process, topic, dlq)."""
    topic = kafka_broker.create_topic(unique_topic("fuzz"), partitions=2)
    dlq = kafka_broker.create_topic(unique_topic("fuzz-dlq"), partitions=1)
    proc = AccumulatorProcess.for_broker(kafka_broker.bootstrap, topic, tmp_path / "acc", dlq_topic=dlq)
    proc.start()
    yield proc, topic, dlq
    proc.kill()
