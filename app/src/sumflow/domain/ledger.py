"""The accumulator's ledger rules: apply a polled batch exactly once. Pure, no I/O.

State = (total, applied count, next offset per partition). A record's events (one, or several in a
v2 record, all at the record's offset) are applied when that offset is at or past the partition's
next offset (older offsets are redeliveries); each event counts unless its request id was applied
within the de-duplication window or earlier in the batch (the adder may publish one id twice after
a crash).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from sumflow.domain.events import InvalidEvent, InvalidReason, SummationEvent, decode_event


@dataclass(frozen=True, slots=True)
class LedgerState:
    total: int = 0
    applied: int = 0
    next_offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read


class ConsumedRecord(Protocol):
    """What the ledger reads of a consumed record: `Record`, or the Kafka client's own record."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record, reduced to what the ledger needs."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class LedgerEntry(NamedTuple):
    """An applied event as the ledger keeps it: its ordinal among applied events and when it was applied."""

    seq: int
    event: SummationEvent
    applied_at: float  # Unix seconds


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that is not a valid event: `code` for the metric label, `reason` for the DLQ header."""

    record: ConsumedRecord
    code: InvalidReason
    reason: str


@dataclass(slots=True)
class BatchOutcome:
    state: LedgerState
    applied: list[SummationEvent] = field(default_factory=list)
    duplicates: list[SummationEvent] = field(default_factory=list)  # id already applied: dropped
    redelivered: int = 0  # records below the stored offset: ignored
    rejected: list[Rejected] = field(default_factory=list)  # invalid: to the DLQ


@dataclass(slots=True)
class DecodedBatch:
    """Polled records decoded in poll order, before the window lookup (the consumer thread's part).

    Keeps no Kafka record except the rejected ones (for the DLQ) and the headers of records that
    have any (traces, exemplars). `segments` marks where each poll's items end: within one poll a
    partition's offsets ascend, so redeliveries are decided poll by poll (apply_decoded).
    """

    events: list[SummationEvent] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    headers: dict[tuple[int, int], Sequence[tuple[str, bytes]]] = field(default_factory=dict)
    segments: list[tuple[int, int]] = field(default_factory=list)  # (events end, rejected end) per poll
    first_offsets: dict[int, int] = field(default_factory=dict)  # partition -> first offset polled
    next_offsets: dict[int, int] = field(default_factory=dict)  # partition -> last offset polled + 1
    in_order: bool = True  # every partition's offsets ascend over the whole batch
    count: int = 0

    def add(self, records: Sequence[ConsumedRecord]) -> None:
        """Decode and append one poll's records (grouped by partition, ascending within it)."""
        self.count += len(records)
        extend = self.events.extend
        decode = decode_event
        first = self.first_offsets
        last = self.next_offsets
        headers = self.headers
        partition = -1
        for record in records:
            offset = record.offset
            if record.partition != partition:
                partition = record.partition
                if partition not in first:
                    first[partition] = offset
                elif offset < last[partition]:
                    self.in_order = False
            if record.headers:
                headers[(partition, offset)] = record.headers
            try:
                extend(decode(record.value, partition, offset))  # a v2 record: several events, one offset
            except InvalidEvent as exc:
                self.rejected.append(Rejected(record, exc.code, exc.reason))
            last[partition] = offset + 1
        self.segments.append((len(self.events), len(self.rejected)))

    def __len__(self) -> int:
        return self.count


def _not_redelivered(batch: DecodedBatch, stored: dict[int, int]) -> tuple[list[SummationEvent], list[Rejected], int]:
    """The events and rejected records at or past the stored offsets, poll by poll (slow path), and
    the number of records below them."""
    running = dict(stored)
    events: list[SummationEvent] = []
    rejected: list[Rejected] = []
    redelivered = 0
    events_start = rejected_start = 0
    for events_end, rejected_end in batch.segments:
        before = dict(running)  # within a poll offsets ascend: below `before` = a redelivery
        skipped = (-1, -1)  # the redelivered record last counted (a v2 record's events are adjacent)
        for ev in batch.events[events_start:events_end]:
            if ev.offset < before.get(ev.partition, 0):
                if (ev.partition, ev.offset) != skipped:
                    skipped = (ev.partition, ev.offset)
                    redelivered += 1
            else:
                events.append(ev)
                running[ev.partition] = max(running.get(ev.partition, 0), ev.offset + 1)
        for item in batch.rejected[rejected_start:rejected_end]:
            partition, offset = item.record.partition, item.record.offset
            if offset < before.get(partition, 0):
                redelivered += 1
            else:
                rejected.append(item)
                running[partition] = max(running.get(partition, 0), offset + 1)
        events_start, rejected_start = events_end, rejected_end
    return events, rejected, redelivered


def apply_decoded(
    state: LedgerState,
    batch: DecodedBatch,
    already_applied: Callable[[list[str]], set[str]],
) -> BatchOutcome:
    """Apply a decoded batch in poll order. `already_applied(ids)` returns those ids inside the window.

    Records below the stored offsets are redeliveries (ignored); invalid records are rejected (to the
    DLQ) and their offsets move on; an id inside the window or earlier in the batch is a duplicate.
    """
    stored = state.next_offsets
    if batch.in_order and all(o >= stored.get(p, 0) for p, o in batch.first_offsets.items()):
        fresh, rejected, redelivered = batch.events, batch.rejected, 0  # the common case
        offsets = {**stored, **batch.next_offsets}
    else:
        fresh, rejected, redelivered = _not_redelivered(batch, stored)
        offsets = dict(stored)
        for ev in fresh:
            offsets[ev.partition] = ev.offset + 1
        for item in rejected:
            offsets[item.record.partition] = max(offsets.get(item.record.partition, 0), item.record.offset + 1)
    return _count_once(state, fresh, offsets, already_applied, rejected=rejected, redelivered=redelivered)


def _count_once(
    state: LedgerState,
    fresh: Sequence[SummationEvent],
    offsets: dict[int, int],
    already_applied: Callable[[list[str]], set[str]],
    *,
    rejected: list[Rejected],
    redelivered: int,
) -> BatchOutcome:
    """The outcome of applying `fresh` in order: ids inside the window or earlier in the batch are duplicates."""
    seen = already_applied([ev.request_id for ev in fresh])
    outcome = BatchOutcome(state, redelivered=redelivered, rejected=rejected)
    applied = outcome.applied
    duplicates = outcome.duplicates
    total = state.total
    for ev in fresh:
        rid = ev.request_id
        if rid in seen:
            duplicates.append(ev)
            continue
        seen.add(rid)
        total += ev.result
        applied.append(ev)
    outcome.state = LedgerState(total, state.applied + len(applied), offsets)
    return outcome
