"""What the adder's use case needs from its adapters: Protocols and the errors they raise.

`service_layer/add_numbers.py` depends on these, not on the concrete adapters:
`adapters/dedupe_store.py` (diskcache) and `adapters/event_publisher.py` (kafka-python) implement
them. Plain typing, exceptions and `ResolvesOnce` (what every delivery is made of): importing this
module loads no storage or Kafka client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from sumflow.domain.idempotency import DedupeRecord


class DedupeUnavailable(RuntimeError):
    """The store could not be read or written in time (locked or I/O error)."""


class PublishFailed(RuntimeError):
    """Kafka did not acknowledge the event within the retry budget."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # short metric label: timeout, broker_error, closed, ...


log = logging.getLogger(__name__)


class ResolvesOnce:
    """Resolves to acknowledged (None) or a PublishFailed exactly once, from any thread; each callback
    runs once, after, and one that raises is logged without keeping the others from running."""

    __slots__ = ("_callbacks", "_error", "_lock", "_resolved", "resolved_at")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[PublishFailed | None], None]] = []
        self._resolved = False
        self._error: PublishFailed | None = None
        self.resolved_at = 0.0  # time.perf_counter() when it resolved

    def _resolve(self, error: PublishFailed | None) -> None:
        with self._lock:
            if self._resolved:
                return
            self._resolved, self._error = True, error
            self.resolved_at = time.perf_counter()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(error)
            except Exception:
                log.exception("delivery callback failed")

    def on_resolved(self, callback: Callable[[PublishFailed | None], None]) -> None:
        """Call `callback(error_or_None)` once resolved (now, if it already is)."""
        with self._lock:
            if not self._resolved:
                self._callbacks.append(callback)
                return
            error = self._error
        callback(error)


class DedupeStorePort(Protocol):
    """Records by request id; every write is atomic, `*_later` writes report from the writer thread."""

    def get(self, request_id: str) -> DedupeRecord | None: ...

    def claim_later(
        self, request_id: str, record: DedupeRecord, then: Callable[[bool, DedupeUnavailable | None], None]
    ) -> None:
        """Store `record` if the id is unknown; then(claimed, error_or_None) after the commit."""

    def replace_later(
        self,
        request_id: str,
        expected: DedupeRecord,
        new: DedupeRecord,
        then: Callable[[bool, DedupeUnavailable | None], None],
    ) -> None:
        """Write `new` if the stored record is still `expected`; then(replaced, error_or_None) after the commit."""

    def complete_later(
        self, request_id: str, record: DedupeRecord, then: Callable[[DedupeUnavailable | None], None]
    ) -> None:
        """Store the done record; then(error_or_None) after the commit."""

    def release(self, request_id: str, owner: str) -> bool:
        """Delete the pending record if `owner` still owns it."""


class DeliveryPort(Protocol):
    """One event handed to the publisher; resolves to acknowledged (None) or PublishFailed once."""

    def on_resolved(self, callback: Callable[[PublishFailed | None], None]) -> None:
        """Call `callback(error_or_None)` once resolved (now, if it already is), from any thread."""

    @property
    def latency_seconds(self) -> float:
        """Send to acknowledgement."""


class EventPublisherPort(Protocol):
    def publish(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> DeliveryPort: ...
