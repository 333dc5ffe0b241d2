"""`sumflow-accumulator backup` while the accumulator runs under a stream of events, `restore` onto a
fresh state directory, a new accumulator there: the total is exact (the events after the backup's
offsets are read again from Kafka and counted once). Real processes, real broker.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from kafka import KafkaProducer

from harness.kafka import KafkaBroker
from harness.processes import ACCUMULATOR_BIN, AccumulatorProcess
from tests.fixtures.event_records import event_value

PARTITIONS = 2
BEFORE = 400  # applied before the backup starts
DURING_MAX = 5000  # produced in small batches until the backup is done (bound)
AFTER = 300  # produced once the backup is done, before the restored accumulator starts
LATER = 200  # produced while the restored accumulator runs


class Events:
    """Distinct events (and a few repeats of applied ids) with the exact expected total."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self.ids: list[str] = []
        self.total = 0

    def produce(self, count: int, *, repeat_first: int = 0) -> None:
        """`count` new events, then the first `repeat_first` ids again (must be counted once)."""
        for _ in range(count):
            rid = str(uuid.uuid4())
            n = len(self.ids)
            self.producer.send(self.topic, value=event_value(rid, n, 7), partition=n % PARTITIONS)
            self.ids.append(rid)
            self.total += n + 7
        for n, rid in enumerate(self.ids[:repeat_first]):
            self.producer.send(self.topic, value=event_value(rid, n, 7), partition=(n + 1) % PARTITIONS)
        self.producer.flush(30)

    def produce_until(self, done: threading.Event, limit: int) -> None:
        """Batches of 20 (plus a repeat) until `done` is set or `limit` events were produced."""
        produced = 0
        while not done.is_set() and produced < limit:
            self.produce(20, repeat_first=1)
            produced += 20

    def close(self) -> None:
        self.producer.close(5)


def _run(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ACCUMULATOR_BIN), *args], env=dict(env), capture_output=True, text=True, timeout=120, check=False
    )


def test_backup_while_running_restored_on_a_fresh_directory_continues_with_an_exact_total(
    kafka_broker: KafkaBroker, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory(partitions=PARTITIONS, prefix="backup")
    kafka_broker.create_topic(f"{topic}.dlq", partitions=1, replication=1)
    events = Events(kafka_broker.bootstrap, topic)
    first = AccumulatorProcess.for_broker(kafka_broker.bootstrap, topic, tmp_path / "first")
    restored = AccumulatorProcess.for_broker(
        kafka_broker.bootstrap, topic, tmp_path / "restored", SUMFLOW_CONSUMER_GROUP=f"g2-{topic}"
    )
    backup_dir = tmp_path / "backups" / "b1"
    try:
        first.start()
        events.produce(BEFORE)
        first.wait_applied(BEFORE)

        # The backup runs while events keep arriving and being committed.
        backup_done = threading.Event()
        during = threading.Thread(target=events.produce_until, args=(backup_done, DURING_MAX))
        during.start()
        done = _run(["backup", "--to", str(backup_dir)], first.env)
        backup_done.set()
        during.join(120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"backed up {first.state_dir} to {backup_dir}: total="), done.stdout

        events.produce(AFTER, repeat_first=BEFORE)
        first.wait_applied(len(events.ids))
        assert first.total() == {"total": events.total, "applied": len(events.ids)}

        # A running accumulator's directory is never restored into.
        busy = _run(["restore", "--from", str(backup_dir), "--replace"], first.env)
        assert busy.returncode == 1 and "stop the service first" in busy.stderr, busy

        restore = _run(["restore", "--from", str(backup_dir)], restored.env)
        assert restore.returncode == 0, restore.stderr
        assert (restored.state_dir / "state.db").is_file()
        assert (restored.state_dir / "total.json").is_file()
        # The fresh directory holds state now: a second restore is refused.
        again = _run(["restore", "--from", str(backup_dir)], restored.env)
        assert again.returncode == 1 and "already holds state" in again.stderr, again

        restored.start()
        events.produce(LATER, repeat_first=len(events.ids))
        final = restored.wait_applied(len(events.ids))
        assert final == {"total": events.total, "applied": len(events.ids)}
        assert restored.total() == final  # nothing more arrives: no event counted twice
        first.wait_applied(len(events.ids))
        assert first.total() == final
    finally:
        events.close()
        for acc in (first, restored):
            acc.stop()
            acc.kill()
    assert first.returncode == 0 and restored.returncode == 0
    # A stopped service's state (no -wal/-shm left) backs up too, to the same total.
    offline = _run(["backup", "--to", str(tmp_path / "backups" / "b2")], first.env)
    assert offline.returncode == 0, offline.stderr
    assert f"total={events.total} applied={len(events.ids)} " in offline.stdout, offline.stdout
    print(f"online backup: {done.stdout.strip()}; events in all {len(events.ids)}")
