"""Rules of the adder's de-duplication: what a stored record means for a new call. Pure, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sumflow.domain.summation import AddCommand


class RecordState(enum.StrEnum):
    PENDING = "pending"  # a call owns the id and is publishing the event
    DONE = "done"  # Kafka acknowledged the event; the answer is final


@dataclass(frozen=True, slots=True)
class DedupeRecord:
    """What the de-dupe store keeps per request id."""

    first_number: int
    second_number: int
    result: int
    state: RecordState
    owner: str  # token of the process+call that owns a pending record
    pid: int  # process id of the owner (liveness check after a crash)
    started_at: float  # unix time the pending record was created

    @classmethod
    def pending(cls, cmd: AddCommand, owner: str, pid: int, now: float) -> DedupeRecord:
        return cls(cmd.first_number, cmd.second_number, cmd.result, RecordState.PENDING, owner, pid, now)

    def done(self) -> DedupeRecord:
        return DedupeRecord(
            self.first_number,
            self.second_number,
            self.result,
            RecordState.DONE,
            self.owner,
            self.pid,
            self.started_at,
        )

    def to_tuple(self) -> tuple[int, int, int, str, str, int, float]:
        return (
            self.first_number,
            self.second_number,
            self.result,
            self.state.value,
            self.owner,
            self.pid,
            self.started_at,
        )

    @classmethod
    def from_tuple(cls, raw: tuple[int, int, int, str, str, int, float]) -> DedupeRecord:
        first, second, result, state, owner, pid, started_at = raw
        return cls(first, second, result, RecordState(state), owner, pid, started_at)


class Decision(enum.Enum):
    DUPLICATE = "duplicate"  # answer with the stored result, publish nothing
    CONFLICT = "conflict"  # same id, other numbers: ALREADY_EXISTS
    WAIT = "wait"  # another live call is publishing this id: wait for it
    TAKE_OVER = "take_over"  # the pending owner is gone: this call may publish


def decide(
    existing: DedupeRecord,
    cmd: AddCommand,
    *,
    now: float,
    pending_timeout: float,
    owner_alive: bool,
) -> Decision:
    """Decide what a call does when a record for its id already exists."""
    if (existing.first_number, existing.second_number) != (cmd.first_number, cmd.second_number):
        return Decision.CONFLICT
    if existing.state is RecordState.DONE:
        return Decision.DUPLICATE
    if not owner_alive or now - existing.started_at > pending_timeout:
        return Decision.TAKE_OVER
    return Decision.WAIT
