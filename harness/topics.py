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
    """The summations on `topic`, one JSON object each in topic order: a v1 record as it is, a v2
    record (several summations, docs/events.md) as one v1-shaped object per summation."""
    events: list[dict[str, Any]] = []
    for record in read_records(bootstrap, topic, timeout):
        doc = orjson.loads(record.value)
        if doc.get("v") == 2:
            events += [{"v": 1, **item, "produced_at_ms": doc["produced_at_ms"]} for item in doc["events"]]
        else:
            events.append(doc)
    return events


def read_dlq(bootstrap: str, dlq: str, expected: int, timeout: float = 60.0) -> list[Any]:
    """Records of partition 0 of `dlq` until `expected` arrived (or `timeout`), plus any beyond that."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_bytes=64 << 20)
    tp = TopicPartition(dlq, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    records: list[Any] = []
    give_up = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < give_up:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        for batch in consumer.poll(timeout_ms=1000).values():  # anything beyond the expected count
            records.extend(batch)
    finally:
        consumer.close()
    return records
