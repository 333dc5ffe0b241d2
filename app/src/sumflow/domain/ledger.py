"""The accumulator's ledger rules: apply a polled batch exactly once. Pure, no I/O.

State = (total, applied count, next offset per partition). A record is applied when its offset
is at or past the partition's next offset (older offsets are redeliveries) and its request id was
not applied within the de-duplication window (the adder may publish one id twice after a crash).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from sumflow.domain.events import InvalidEvent, decode_fields


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


class AppliedEvent(NamedTuple):
    """A decoded event and where it came from (a tuple: built without Python code per event)."""

    request_id: str
    first_number: int
    second_number: int
    result: int
    produced_at_ms: int
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
    fresh: list[AppliedEvent] = []
    rejected: list[Rejected] = []
    offsets = dict(state.next_offsets)
    redelivered = 0
    new = tuple.__new__
    for record in records:
        partition = record.partition
        offset = record.offset
        if offset < offsets.get(partition, 0):
            redelivered += 1
            continue
        offsets[partition] = offset + 1
        try:
            fresh.append(new(AppliedEvent, (*decode_fields(record.value), partition, offset)))
        except InvalidEvent as exc:
            rejected.append(Rejected(record, str(exc) or "invalid"))
    seen = already_applied([ev[0] for ev in fresh])
    outcome = BatchOutcome(state, redelivered=redelivered, rejected=rejected)
    applied = outcome.applied
    duplicates = outcome.duplicates
    total = state.total
    for ev in fresh:
        rid = ev[0]
        if rid in seen:
            duplicates.append(ev)
            continue
        seen.add(rid)
        total += ev[3]
        applied.append(ev)
    outcome.state = LedgerState(total, state.applied + len(applied), offsets)
    return outcome
