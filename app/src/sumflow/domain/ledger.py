"""The accumulator's ledger rules: apply a polled batch exactly once. Pure, no I/O.

State = (total, applied count, next offset per partition). A record is applied when its offset
is at or past the partition's next offset (older offsets are redeliveries) and its request id was
not applied within the de-duplication window (the adder may publish one id twice after a crash).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sumflow.domain.events import InvalidEvent, SummationEvent, decode_event


@dataclass(frozen=True, slots=True)
class LedgerState:
    total: int = 0
    applied: int = 0
    next_offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record, reduced to what the ledger needs."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class AppliedEvent:
    event: SummationEvent
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Rejected:
    record: Record
    reason: str


@dataclass(slots=True)
class BatchOutcome:
    state: LedgerState
    applied: list[AppliedEvent] = field(default_factory=list)
    duplicates: list[AppliedEvent] = field(default_factory=list)  # id already applied: dropped
    redelivered: int = 0  # records below the stored offset: ignored
    rejected: list[Rejected] = field(default_factory=list)  # invalid: to the DLQ


def apply_batch(
    state: LedgerState,
    records: Iterable[Record],
    already_applied: Callable[[list[str]], set[str]],
) -> BatchOutcome:
    """Apply records in order. `already_applied(ids)` returns those ids inside the window."""
    fresh: list[tuple[Record, SummationEvent | None, str | None]] = []
    offsets = dict(state.next_offsets)
    redelivered = 0
    for record in records:
        if record.offset < offsets.get(record.partition, 0):
            redelivered += 1
            continue
        offsets[record.partition] = record.offset + 1
        try:
            fresh.append((record, decode_event(record.value), None))
        except InvalidEvent as exc:
            fresh.append((record, None, str(exc)))
    seen = already_applied([ev.request_id for _, ev, _ in fresh if ev is not None])
    total, applied_count = state.total, state.applied
    outcome = BatchOutcome(state)
    outcome.redelivered = redelivered
    for record, event, reason in fresh:
        if event is None:
            outcome.rejected.append(Rejected(record, reason or "invalid"))
            continue
        item = AppliedEvent(event, record.partition, record.offset)
        if event.request_id in seen:
            outcome.duplicates.append(item)
            continue
        seen.add(event.request_id)
        total += event.result
        applied_count += 1
        outcome.applied.append(item)
    outcome.state = LedgerState(total, applied_count, offsets)
    return outcome
