"""What the accumulator's use cases need from their adapters: Protocols and the errors they raise.

`service_layer/ledger_consumer.py` and `service_layer/rebuild.py` depend on these, not on the
concrete adapters (`event_source`, `topic_reader`, `dlq_publisher`, `ledger_store`, `audit_log`,
`total_file`), which bootstrap.accumulator passes in; the unit tests pass in-memory ones. Plain
typing and exceptions: importing this module loads no Kafka client.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from sumflow.adapters.audit_log import AuditPosition
from sumflow.domain.events import SummationEvent
from sumflow.domain.ledger import ConsumedRecord, LedgerState, Rejected


class DlqPublishError(RuntimeError):
    """Kafka did not acknowledge a DLQ record in time; the batch must not be committed."""


class EventSource(Protocol):
    """The topic as the ledger consumer reads it: every partition assigned, positioned by our state."""

    topic: str

    @property
    def partitions(self) -> list[int]: ...
    def refresh_assignment(self, next_offsets: Mapping[int, int], *, force: bool = False) -> list[int]: ...
    def seek(self, next_offsets: Mapping[int, int]) -> None: ...
    def poll(self, timeout_ms: int) -> list[ConsumedRecord]: ...
    def lag(self) -> dict[int, int]: ...
    def commit_group_offsets(self, next_offsets: Mapping[int, int], *, wait: bool = False) -> None: ...
    def close(self) -> None: ...


class TopicReader(Protocol):
    """The topic read once from the beginning of every partition up to its end (the rebuild)."""

    topic: str
    servers: str  # where the topic was looked for, for messages

    def bounds(self) -> tuple[dict[int, int], dict[int, int]]:
        """(first offset, end offset) per partition, the read positioned at the first; empty if no topic."""
        ...

    def poll(self) -> list[ConsumedRecord]:
        """The next records below the end offsets ([] when none came within the poll timeout)."""
        ...

    def done(self) -> bool:
        """Every partition read up to its end offset."""
        ...

    def close(self) -> None: ...


class DeadLetters(Protocol):
    def publish(self, rejected: Sequence[Rejected]) -> None:
        """Returns once every record is acknowledged; raises otherwise (the batch is not committed)."""
        ...

    def close(self) -> None: ...


class LedgerStore(Protocol):
    """The durable state: one transaction per batch, the de-duplication window."""

    def already_applied(self, request_ids: Sequence[str]) -> set[str]: ...
    def commit_batch(
        self, state: LedgerState, applied: Sequence[SummationEvent], audit: AuditPosition, now: float
    ) -> None: ...
    def checkpoint(self) -> None: ...
    def close(self) -> None: ...


class FreshLedgerStore(LedgerStore, Protocol):
    """A store the rebuild creates at the state.db path once the old file is moved aside."""

    def open(self, *, create: bool) -> object: ...


class AuditTrail(Protocol):
    """The append-only audit of applied events, cut back to the committed position after a failure."""

    def append_events(self, events: Sequence[SummationEvent], applied_at: float) -> AuditPosition: ...
    def recover(self, position: AuditPosition) -> None: ...
    def close(self) -> None: ...


class AuditArchive(AuditTrail, Protocol):
    """The audit as the rebuild reads it: every event it holds, oldest first."""

    def truncate_torn_tail(self) -> AuditPosition: ...
    def count_lines(self) -> int: ...
    def events(self) -> Iterator[SummationEvent | None]:
        """Every line's event, None for a line that is not one."""
        ...


class TotalFile(Protocol):
    def __call__(self, state: LedgerState, now: float) -> None:
        """Replace total.json with the state (raises OSError; the caller retries later)."""
        ...
