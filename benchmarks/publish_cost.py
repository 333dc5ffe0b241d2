"""CPU per summation of publishing with the adder's own publisher, v1 (one per record) against v2.

    python -m benchmarks.publish_cost [--count 12000] [--per-record 1,4,12]

Starts a single-node broker (harness), connects `adapters.event_publisher.EventPublisher` with the
adder's settings (acks=all, idempotent, linger 1 ms) and publishes `count` summations with 64
records in flight, as one v1 event per record and as v2 records of N summations. Reported: this
process's CPU (all threads: encoding, kafka-python's send and its sender thread) per summation,
less the cost of making the commands, and summations/s. No gRPC, no de-dupe: the Kafka part alone.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
import uuid
from pathlib import Path

from harness.kafka import KafkaBroker
from sumflow.adapters.event_publisher import EventPublisher, ProducerSettings
from sumflow.domain.events import encode_event, encode_events
from sumflow.domain.summation import AddCommand, validate_add

WINDOW = 64  # records in flight, as the adder's calls at 64 concurrent


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def commands(count: int) -> list[AddCommand]:
    return [validate_add(str(uuid.uuid4()), 1, 2) for _ in range(count)]


def publish(publisher: EventPublisher, count: int, per_record: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) to publish `count` summations, `per_record` in each record."""
    records = count // per_record
    window = threading.Semaphore(WINDOW)
    left = [records]
    lock = threading.Lock()
    done = threading.Event()

    def acked(_error: object) -> None:
        window.release()
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    cpu, wall = cpu_seconds(), time.monotonic()
    for _ in range(records):
        cmds = commands(per_record)
        value = encode_event(cmds[0], 1) if per_record == 1 else encode_events(cmds, 1)
        window.acquire()
        publisher.publish(cmds[0].request_id.encode(), value, []).on_resolved(acked)
    if not done.wait(300):
        raise TimeoutError("records not acknowledged in 300 s")
    return cpu_seconds() - cpu, time.monotonic() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=12_000)
    parser.add_argument("--per-record", default="1,4,12")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sumflow-publish-cost-") as tmp:
        broker = KafkaBroker(Path(tmp) / "kafka")
        broker.start()
        try:
            broker.create_topic("publish-cost", partitions=1, replication=1)
            settings = ProducerSettings(
                bootstrap=[broker.bootstrap], topic="publish-cost", delivery_timeout_seconds=30, retries=5, linger_ms=1
            )
            publisher = EventPublisher.connect(settings)
            publish(publisher, 2_000, 1)  # warm-up
            start = cpu_seconds()
            commands(args.count)
            making = (cpu_seconds() - start) / args.count
            for per_record in [int(n) for n in args.per_record.split(",")] * 2:
                cpu, wall = publish(publisher, args.count, per_record)
                print(
                    f"{per_record:3d} per record: {(cpu / args.count - making) * 1e6:6.1f} us CPU per summation,"
                    f" {args.count / wall:,.0f} summations/s"
                )
            publisher.close(5)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
