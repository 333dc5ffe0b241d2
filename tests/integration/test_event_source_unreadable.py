"""A batch the client cannot decode fails every poll loudly instead of spinning (real broker).

The broker holds a zstd batch; this process is made to lack the codec, as an install without the
`zstandard` library did (kafka-python then raised once and spun at 100% CPU in its next poll). Every
poll must raise RecordsUnreadable naming the partition and offset, in bounded time.
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaProducer
from kafka.errors import UnsupportedCodecError
from kafka.record.default_records import DefaultRecordBatch

from sumflow.adapters.event_source import KafkaEventSource, RecordsUnreadable


def refuse_codec(self: DefaultRecordBatch, compression_type: int) -> None:
    raise UnsupportedCodecError(f"Libraries for codec {compression_type} not found")


def test_an_undecodable_batch_raises_on_every_poll(kafka_broker, topic, monkeypatch):
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, compression_type="zstd", linger_ms=50)
    for i in range(50):  # compressible, so kafka-python really sends a zstd batch
        producer.send(topic, value=b'{"padding": "%d"}' % i + b" " * 40)
    producer.flush(30)
    producer.close(10)
    monkeypatch.setattr(DefaultRecordBatch, "_assert_has_codec", refuse_codec)
    source = KafkaEventSource((kafka_broker.bootstrap,), topic, "g-unreadable", max_poll_records=100)
    try:
        for _ in range(3):
            source.refresh_assignment({}, force=not source.partitions)
            started = time.monotonic()
            with pytest.raises(RecordsUnreadable, match=rf"{topic}\[0\]@0: UnsupportedCodecError"):
                for _ in range(20):  # the fetch may take a few polls to arrive
                    source.poll(500)
            assert time.monotonic() - started < 15
    finally:
        source.close()
