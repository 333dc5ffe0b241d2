"""What the accumulator's HTTP threads read: the latest committed snapshot, readiness and health."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sumflow.adapters.accumulator_ports import DlqPublishError
from sumflow.domain.ledger import LedgerState


@dataclass(frozen=True, slots=True)
class Snapshot:
    total: int
    applied: int
    total_json: bytes  # body of GET /api/total, rendered once per commit
    final_text: bytes  # body of GET /api/final


def make_snapshot(state: LedgerState) -> Snapshot:
    return Snapshot(
        state.total,
        state.applied,
        f'{{"total":{state.total},"applied":{state.applied}}}'.encode(),
        str(state.total).encode(),
    )


class AccumulatorStatus:
    """The latest committed snapshot, readiness and health, written by the consumer.

    Health is liveness: the consumer made progress (committed a batch, or found nothing pending)
    within `stall_seconds`. A consumer that stops progressing with records pending, for whatever
    reason (an unreadable record, a commit that keeps failing, a thread stuck in a library), fails
    /healthz, and the service stops sending systemd's watchdog keep-alives.
    """

    def __init__(self, stall_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.snapshot = make_snapshot(LedgerState())
        self.state_loaded = False
        self.partitions_assigned = False
        self.error: str | None = None  # why the last batch failed: the full readiness reason
        self.stopping = False
        self.stall_seconds = stall_seconds
        self.clock = clock
        self.last_progress = clock()

    def progressed(self) -> None:
        self.last_progress = self.clock()

    def stalled_for(self) -> float | None:
        """Seconds without progress, once beyond stall_seconds; None while the consumer progresses."""
        idle = self.clock() - self.last_progress
        return idle if idle > self.stall_seconds else None

    def readiness(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "shutting down"
        if not self.state_loaded:
            return False, "state not loaded"
        if not self.partitions_assigned:
            return False, "no partitions of the topic assigned yet"
        if self.error is not None:
            return False, self.error
        stalled = self.stalled_for()
        if stalled is not None:
            return False, f"consumer stalled: no progress for {stalled:.0f} s"
        return True, "ready"

    def health(self) -> tuple[bool, str]:
        stalled = self.stalled_for()
        if stalled is None:
            return True, "ok"
        reason = f"consumer stalled: no progress for {stalled:.0f} s with records pending"
        return False, f"{reason} ({self.error})" if self.error else reason


def failure_reason(exc: BaseException, *, polling: bool) -> str:
    """The readiness reason for a failed step: what failed (reading, dead-lettering, committing)."""
    detail = f"{type(exc).__name__}: {exc}"[:300]
    if polling:
        return f"cannot read the topic: {detail}"
    if isinstance(exc, DlqPublishError) or isinstance(exc.__cause__, DlqPublishError):
        return f"dead-letter publish failing: {detail}"
    return f"state commit failing: {detail}"
