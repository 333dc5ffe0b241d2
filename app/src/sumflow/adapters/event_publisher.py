"""Publishes summation events to Kafka with an idempotent, acks=all kafka-python producer.

`publish` returns a `Delivery` right after handing the record to the producer; `Delivery.on_resolved`
tells the caller of Kafka's acknowledgement (or failure) from the producer's thread. If the caller
stops waiting (its own deadline) the delivery still resolves later and tells whoever registered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer
from kafka import errors as kafka_errors

from sumflow.adapters.adder_ports import PublishFailed, ResolvesOnce

log = logging.getLogger(__name__)


REPLACE_INTERVAL_SECONDS = 5.0


class BrokerUnreachable(RuntimeError):
    """The producer could not bootstrap against any broker within the start budget."""


@dataclass(frozen=True, slots=True)
class ProducerSettings:
    bootstrap: Sequence[str]
    topic: str
    delivery_timeout_seconds: float
    retries: int
    linger_ms: int
    max_in_flight: int = 5  # produce requests in flight per connection (idempotence keeps order up to 5)
    client_id: str = "sumflow-adder"
    client_security: Mapping[str, Any] = field(default_factory=dict)  # adapters.kafka_security kwargs


class Delivery(ResolvesOnce):
    """One event handed to the producer; resolves to acknowledged or failed exactly once."""

    __slots__ = ("sent_at",)

    def __init__(self) -> None:
        super().__init__()
        self.sent_at = time.perf_counter()

    def _acked(self, _metadata: object) -> None:
        self._resolve(None)

    def _failed(self, exc: BaseException) -> None:
        self._resolve(PublishFailed(_reason(exc), f"Kafka did not acknowledge the event: {exc}"))

    @property
    def latency_seconds(self) -> float:
        return self.resolved_at - self.sent_at


def _reason(exc: BaseException) -> str:
    if isinstance(exc, kafka_errors.KafkaTimeoutError):
        return "timeout"
    if isinstance(exc, kafka_errors.KafkaConnectionError | kafka_errors.NoBrokersAvailable):
        return "connection"
    if isinstance(exc, kafka_errors.IllegalStateError):
        return "closed"
    if isinstance(exc, kafka_errors.BrokerResponseError):
        return "broker_error"
    return "other"


class EventPublisher:
    """Thin wrapper over one KafkaProducer shared by all gRPC worker threads."""

    def __init__(self, producer: KafkaProducer, topic: str, factory: Callable[[], KafkaProducer] | None = None) -> None:
        self._producer = producer
        self._topic = topic
        # kafka-python's idempotent producer can stay wedged after a broker crash (every later send
        # expires): after a delivery timeout, the next publish swaps in a fresh producer (new id).
        self._factory = factory
        self._stale = False
        self._next_replace = 0.0
        self._swap_lock = threading.Lock()

    @classmethod
    def connect(
        cls,
        settings: ProducerSettings,
        *,
        attempts: int = 30,
        attempt_timeout_seconds: float = 2.0,
        backoff_seconds: float = 0.5,
    ) -> EventPublisher:
        """Create the producer, retrying the bootstrap a bounded number of times."""
        delivery_ms = int(settings.delivery_timeout_seconds * 1000)
        request_ms = max(500, min(30_000, delivery_ms - settings.linger_ms))
        last: Exception | None = None

        def new_producer() -> KafkaProducer:
            return KafkaProducer(
                bootstrap_servers=list(settings.bootstrap),
                client_id=settings.client_id,
                acks="all",
                enable_idempotence=True,
                retries=settings.retries,
                retry_backoff_ms=100,
                delivery_timeout_ms=delivery_ms,
                request_timeout_ms=request_ms,
                max_block_ms=delivery_ms,
                linger_ms=settings.linger_ms,
                max_in_flight_requests_per_connection=settings.max_in_flight,
                reconnect_backoff_ms=50,
                reconnect_backoff_max_ms=1000,
                bootstrap_timeout_ms=int(attempt_timeout_seconds * 1000),
                metrics_enabled=False,
                **settings.client_security,
            )

        for attempt in range(1, attempts + 1):
            try:
                producer = new_producer()
            except (kafka_errors.KafkaError, OSError) as exc:
                last = exc
                log.warning(
                    "kafka not reachable yet",
                    extra={"attempt": attempt, "of": attempts, "error": str(exc) or type(exc).__name__},
                )
                if attempt < attempts:
                    time.sleep(backoff_seconds)
                continue
            publisher = cls(producer, settings.topic, new_producer)
            publisher.warm_up(attempt_timeout_seconds)
            return publisher
        raise BrokerUnreachable(f"no Kafka broker reachable at {','.join(settings.bootstrap)}: {last}")

    def warm_up(self, timeout_seconds: float) -> None:
        """Fetch the topic's metadata now so the first call does not pay for it (best effort)."""
        try:
            self._producer.partitions_for(self._topic)
        except kafka_errors.KafkaError as exc:
            log.warning("topic metadata not available yet", extra={"topic": self._topic, "error": str(exc)})

    def publish(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> Delivery:
        if self._stale:
            self._replace_producer()
        producer = self._producer
        delivery = Delivery()
        try:
            future = producer.send(self._topic, value=value, key=key, headers=headers)
        except (kafka_errors.KafkaError, OSError) as exc:
            delivery._resolve(PublishFailed(_reason(exc), f"Kafka refused the event: {exc}"))
            return delivery
        future.add_callback(delivery._acked)
        future.add_errback(delivery._failed)
        if self._factory is not None:
            future.add_errback(lambda exc: self._note_failure(producer, exc))
        return delivery

    def _note_failure(self, producer: KafkaProducer, exc: BaseException) -> None:
        if producer is self._producer and isinstance(exc, kafka_errors.KafkaTimeoutError):
            self._stale = True

    def _replace_producer(self) -> None:
        """Swap in a fresh producer (at most every REPLACE_INTERVAL_SECONDS; kept if Kafka is still down).

        Records left in the old one fail, so their callers answer UNAVAILABLE and the client retries
        with the same id; a record it delivered anyway is dropped by the accumulator's id window.
        """
        assert self._factory is not None
        with self._swap_lock:
            now = time.monotonic()
            if not self._stale or now < self._next_replace:
                return
            self._next_replace = now + REPLACE_INTERVAL_SECONDS
            try:
                fresh = self._factory()
            except (kafka_errors.KafkaError, OSError) as exc:
                log.warning("kafka producer not replaced: broker not reachable", extra={"error": str(exc)})
                return
            old, self._producer, self._stale = self._producer, fresh, False
        log.warning("replaced the kafka producer after delivery timeouts")
        threading.Thread(target=old.close, kwargs={"timeout": 0}, name="old-producer-close", daemon=True).start()

    def close(self, timeout_seconds: float) -> None:
        """Flush what is buffered (bounded) and close the connections."""
        try:
            self._producer.flush(timeout=timeout_seconds)
        except kafka_errors.KafkaError as exc:
            log.warning("producer flush incomplete", extra={"error": str(exc)})
        self._producer.close(timeout=timeout_seconds)
