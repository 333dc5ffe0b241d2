"""Kafka side of the benchmarks: pre-produce a backlog fast, and the bare-consumer ceiling."""

from __future__ import annotations

import multiprocessing
import subprocess
import time
import uuid
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from sumflow.domain.events import encode_event
from sumflow.domain.summation import AddCommand

JAVA_PRODUCER = Path(__file__).resolve().parent / "BacklogProducer.java"


def produce_backlog_java(bootstrap: str, topic: str, count: int, libs: Path, *, timeout_s: float = 900) -> float:
    """The same backlog from the Java client (BacklogProducer.java, run as a source file): ~50x faster."""
    start = time.monotonic()
    subprocess.run(
        ["java", "-Xmx256m", "-cp", f"{libs}/*", str(JAVA_PRODUCER), bootstrap, topic, str(count)],
        check=True,
        capture_output=True,
        timeout=timeout_s,
    )
    return time.monotonic() - start


def produce_backlog(bootstrap: str, topic: str, count: int, *, workers: int = 2, timeout_s: float = 900) -> float:
    """Produce `count` valid summation events (first=1, second=2) from `workers` processes; returns seconds."""
    start = time.monotonic()
    shares = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        pending = [pool.apply_async(_produce, (bootstrap, topic, n, timeout_s)) for n in shares]
        for job in pending:
            job.get(timeout_s + 60)
    return time.monotonic() - start


def _produce(bootstrap: str, topic: str, count: int, timeout_s: float) -> float:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=20,
        batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    start = time.monotonic()
    now_ms = int(time.time() * 1000)
    try:
        for i in range(count):
            request_id = str(uuid.uuid4())
            value = encode_event(AddCommand(request_id, 1, 2), now_ms)
            producer.send(topic, key=request_id.encode(), value=value)
            if i % 100_000 == 0 and time.monotonic() - start > timeout_s:
                raise TimeoutError(f"producing the backlog took longer than {timeout_s}s")
        producer.flush(timeout=timeout_s)
    finally:
        producer.close()
    return time.monotonic() - start


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
