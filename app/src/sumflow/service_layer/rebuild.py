"""Recovery: rebuild the accumulator's state from the audit log and the Kafka topic.

`sumflow-accumulator rebuild` (same environment as the service, service stopped; wired by
bootstrap.accumulator.rebuild_state, which holds the state directory's lock):
1. reads every audit segment (applied events, oldest first; a torn last line is dropped);
2. reads the topic from the beginning of every partition up to its current end, decoding events
   (skipped with `--audit-only`, e.g. when the topic's data is gone too);
3. moves state.db (and its -wal/-shm) aside as `state.db.corrupt-<UTC timestamp>`;
4. de-duplicates by request id (first occurrence wins), appends the events the audit lacked to the
   audit, and writes a fresh state.db (total, count, next offsets = the end offsets read, the
   de-duplication window) and total.json.
Invalid records are not re-sent to the DLQ. An id applied twice in the past because its repeats were
further apart than the window is counted once by the rebuild.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sumflow.adapters.accumulator_ports import AuditArchive, FreshLedgerStore, TopicReader, TotalFile
from sumflow.domain.events import InvalidEvent, SummationEvent, decode_event
from sumflow.domain.ledger import LedgerState

log = logging.getLogger(__name__)

AUDIT_APPEND_EVENTS = 20000  # events per audit append (one fsync each)


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


@dataclass
class RebuildReport:
    total: int = 0
    applied: int = 0
    from_audit: int = 0
    from_kafka: int = 0
    invalid_skipped: int = 0
    next_offsets: dict[int, int] = field(default_factory=dict)
    moved_aside: list[str] = field(default_factory=list)


@dataclass
class StateRebuild:
    """The adapters a rebuild works on (built by bootstrap.accumulator.rebuild_state)."""

    audit: AuditArchive
    topic: Callable[[], TopicReader] | None  # None: the audit only
    new_store: Callable[[], FreshLedgerStore]  # a store at the state.db path, once it is moved aside
    move_aside: Callable[[], list[str]]  # state.db and its -wal/-shm: the names they got
    write_total: TotalFile
    window_max_ids: int


def _read_topic(
    reader: TopicReader,
    events: dict[str, SummationEvent],
    report: RebuildReport,
    timeout: float,
    progress: RebuildProgress,
) -> None:
    try:
        starts, ends = reader.bounds()
        if not ends:
            raise RebuildError(f"topic {reader.topic!r} not found on {reader.servers}")
        report.next_offsets = dict(ends)
        progress.phase("topic", sum(ends[p] - starts.get(p, 0) for p in ends))
        deadline = time.monotonic() + timeout
        while not reader.done():
            if time.monotonic() > deadline:
                raise RebuildError(f"reading the topic took longer than {timeout:.0f}s")
            records = reader.poll()
            for record in records:
                try:
                    decoded = decode_event(record.value, record.partition, record.offset)
                except InvalidEvent:
                    report.invalid_skipped += 1
                    continue
                for ev in decoded:
                    if ev.request_id not in events:
                        events[ev.request_id] = ev
                        report.from_kafka += 1
            progress.advance(len(records))
    finally:
        reader.close()


def rebuild(parts: StateRebuild, *, timeout: float = 600.0, progress: RebuildProgress | None = None) -> RebuildReport:
    progress = progress or NoProgress()
    report = RebuildReport()
    audit = parts.audit
    position = audit.truncate_torn_tail()
    events: dict[str, SummationEvent] = {}  # request id -> its first event, in the order read
    audit_next: dict[int, int] = {}
    progress.phase("audit", audit.count_lines())
    for ev in audit.events():
        progress.advance(1)
        if ev is None:
            report.invalid_skipped += 1
            continue
        audit_next[ev.partition] = max(audit_next.get(ev.partition, 0), ev.offset + 1)
        if ev.request_id not in events:
            events[ev.request_id] = ev
    report.from_audit = in_audit = len(events)
    if parts.topic is not None:
        _read_topic(parts.topic(), events, report, timeout, progress)
        for partition, offset in audit_next.items():  # never go back behind what the audit holds
            report.next_offsets[partition] = max(report.next_offsets.get(partition, 0), offset)
    else:
        report.next_offsets = audit_next

    report.moved_aside = parts.move_aside()

    now = time.time()
    applied = list(events.values())
    audit.recover(position)
    missing = applied[in_audit:]  # the events the audit lacked
    for start in range(0, len(missing), AUDIT_APPEND_EVENTS):
        position = audit.append_events(missing[start : start + AUDIT_APPEND_EVENTS], now)
    audit.close()

    report.applied = len(applied)
    report.total = sum(ev.result for ev in applied)
    state = LedgerState(report.total, report.applied, report.next_offsets)
    store = parts.new_store()
    try:
        store.open(create=True)
        store.commit_batch(state, applied[-parts.window_max_ids :], position, now)
        store.checkpoint()
    finally:
        store.close()
    parts.write_total(state, now)
    return report
