"""The catch-up baseline: a bare kafka-python consumer that reads a backlog and decodes nothing."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition


def bare_consume(bootstrap: str, topic: str, count: int, *, timeout_s: float = 300) -> float:
    """Read `count` records from the start of every partition, decoding nothing; returns events/s."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=10_000,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        seen = 0
        start = time.monotonic()
        deadline = start + timeout_s
        while seen < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare consumer read {seen}/{count} in {timeout_s}s")
            for records in consumer.poll(timeout_ms=500).values():
                seen += len(records)
        return seen / (time.monotonic() - start)
    finally:
        consumer.close()
