"""A backlog of valid summation events on a topic, produced fast (for the catch-up benchmark)."""

from __future__ import annotations

import multiprocessing
import subprocess
import time
import uuid
from pathlib import Path

from kafka import KafkaProducer

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
