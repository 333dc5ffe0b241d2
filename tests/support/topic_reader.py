"""Read a whole topic (every partition, up to its end offset at call time) with kafka-python."""

from __future__ import annotations

import time
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition


def read_records(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Any]:
    """Every record currently on `topic`, in partition/offset order (kafka ConsumerRecord objects)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end offsets {end} in {timeout}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        records.sort(key=lambda r: (r.partition, r.offset))
        return records
    finally:
        consumer.close()


def read_events(bootstrap: str, topic: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The JSON summation events on `topic`, decoded."""
    return [orjson.loads(r.value) for r in read_records(bootstrap, topic, timeout)]
