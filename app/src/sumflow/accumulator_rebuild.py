"""Recovery: rebuild the accumulator's state from the audit log and the Kafka topic.

`sumflow-accumulator rebuild` (same environment as the service, service stopped):
1. moves state.db (and its -wal/-shm) aside as `state.db.corrupt-<UTC timestamp>`;
2. reads every audit segment (applied events, oldest first; a torn last line is dropped);
3. reads the topic from the beginning of every partition up to its current end, decoding events
   (skipped with `--audit-only`, e.g. when the topic's data is gone too);
4. de-duplicates by request id (first occurrence wins), appends the events the audit lacked to the
   audit, and writes a fresh state.db (total, count, next offsets = the end offsets read, the
   de-duplication window) and total.json.
Invalid records are not re-sent to the DLQ. An id applied twice in the past because its repeats were
further apart than the window is counted once by the rebuild.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sumflow.adapters.audit_log import AuditPosition, audit_event, list_segments, read_audit
from sumflow.adapters.ledger_store import state_db_path
from sumflow.adapters.total_file import fsync_dir, write_total_file
from sumflow.bootstrap_accumulator import lock_state_dir, new_audit_log, new_store
from sumflow.config import AccumulatorConfig
from sumflow.domain.events import InvalidEvent, SummationEvent, decode_event
from sumflow.domain.ledger import LedgerState

log = logging.getLogger(__name__)


class RebuildError(RuntimeError):
    pass


class RebuildProgress(Protocol):
    """Told what the rebuild reads: a phase ("audit", "topic") with its record count, then records read."""

    def phase(self, name: str, total: int) -> None: ...

    def advance(self, records: int) -> None: ...


class NoProgress:
    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, records: int) -> None:
        pass


def count_audit_lines(directory: Path) -> int:
    """Complete lines in every audit segment (the audit phase's total), read in 1 MiB blocks."""
    count = 0
    for _, path in list_segments(directory):
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                count += block.count(b"\n")
    return count


@dataclass
class RebuildReport:
    total: int = 0
    applied: int = 0
    from_audit: int = 0
    from_kafka: int = 0
    invalid_skipped: int = 0
    next_offsets: dict[int, int] = field(default_factory=dict)
    moved_aside: list[str] = field(default_factory=list)


def _truncate_torn_tail(directory: Path) -> AuditPosition:
    """Cut the last segment after its last complete line; return the position to append at."""
    segments = list_segments(directory)
    if not segments:
        return AuditPosition(1, 0)
    number, path = segments[-1]
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(keep)
            os.fsync(handle.fileno())
    return AuditPosition(number, keep)


def _read_topic(
    config: AccumulatorConfig,
    events: dict[str, SummationEvent],
    report: RebuildReport,
    timeout: float,
    progress: RebuildProgress,
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    from sumflow.adapters.kafka_records import install_lenient_header_keys

    install_lenient_header_keys()  # the same records the service reads (see adapters.event_source)
    common = config.common
    consumer = KafkaConsumer(
        bootstrap_servers=list(common.kafka_bootstrap),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id="sumflow-accumulator-rebuild",
        max_poll_records=10000,
    )
    try:
        partitions = consumer.partitions_for_topic(common.topic) or set()
        if not partitions:
            raise RebuildError(f"topic {common.topic!r} not found on {','.join(common.kafka_bootstrap)}")
        tps = [TopicPartition(common.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
        starts = {tp.partition: off for tp, off in consumer.beginning_offsets(tps).items()}
        report.next_offsets = dict(ends)
        progress.phase("topic", sum(ends[p] - starts.get(p, 0) for p in ends))
        deadline = time.monotonic() + timeout
        remaining = {tp for tp in tps if consumer.position(tp) < ends[tp.partition]}
        while remaining:
            if time.monotonic() > deadline:
                raise RebuildError(f"reading the topic took longer than {timeout:.0f}s")
            for tp, messages in consumer.poll(timeout_ms=500).items():
                end = ends[tp.partition]
                read = 0
                for m in messages:
                    if m.offset >= end:
                        break
                    read += 1
                    try:
                        ev = decode_event(m.value, tp.partition, m.offset)
                    except InvalidEvent:
                        report.invalid_skipped += 1
                        continue
                    if ev.request_id not in events:
                        events[ev.request_id] = ev
                        report.from_kafka += 1
                progress.advance(read)
            remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp.partition]}
    finally:
        consumer.close(autocommit=False)


def rebuild(
    config: AccumulatorConfig,
    *,
    use_kafka: bool = True,
    timeout: float = 600.0,
    progress: RebuildProgress | None = None,
) -> RebuildReport:
    state_dir = config.state_dir
    lock = lock_state_dir(state_dir)
    try:
        return _rebuild_locked(config, use_kafka=use_kafka, timeout=timeout, progress=progress or NoProgress())
    finally:
        lock.close()


def move_aside(state_dir: Path) -> list[str]:
    """Rename state.db (and -wal/-shm) to *.corrupt-<UTC timestamp>; never delete them."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    db = state_db_path(state_dir)
    moved = []
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{db}{suffix}")
        if old.exists():
            target = Path(f"{db}{suffix}.corrupt-{stamp}")
            old.rename(target)
            moved.append(str(target))
    fsync_dir(state_dir)
    return moved


def _rebuild_locked(
    config: AccumulatorConfig, *, use_kafka: bool, timeout: float, progress: RebuildProgress
) -> RebuildReport:
    state_dir = config.state_dir
    report = RebuildReport()
    audit = new_audit_log(config)
    audit.directory.mkdir(parents=True, exist_ok=True)
    position = _truncate_torn_tail(audit.directory)
    events: dict[str, SummationEvent] = {}
    audit_next: dict[int, int] = {}
    progress.phase("audit", count_audit_lines(audit.directory))
    for doc in read_audit(audit.directory):
        progress.advance(1)
        ev = audit_event(doc)
        if ev is None:
            report.invalid_skipped += 1
            continue
        audit_next[ev.partition] = max(audit_next.get(ev.partition, 0), ev.offset + 1)
        if ev.request_id not in events:
            events[ev.request_id] = ev
    report.from_audit = len(events)
    in_audit = len(events)
    if use_kafka:
        _read_topic(config, events, report, timeout, progress)
        for partition, offset in audit_next.items():  # never go back behind what the audit holds
            report.next_offsets[partition] = max(report.next_offsets.get(partition, 0), offset)
    else:
        report.next_offsets = audit_next

    report.moved_aside = move_aside(state_dir)

    now = time.time()
    applied = list(events.values())
    audit.recover(position)
    missing = applied[in_audit:]  # the events the audit lacked
    batch = 20000
    for start in range(0, len(missing), batch):
        position = audit.append_events(missing[start : start + batch], now)
    audit.close()

    report.applied = len(applied)
    report.total = sum(ev.result for ev in applied)
    state = LedgerState(report.total, report.applied, report.next_offsets)
    store = new_store(config)
    try:
        store.open(create=True)
        store.commit_batch(state, applied[-config.applied_window_max_ids :], position, now)
        store.checkpoint()
    finally:
        store.close()
    write_total_file(state_dir, state, now)
    return report
