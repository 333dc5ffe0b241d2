"""Dead-letter publisher: invalid records go to the DLQ topic with their original key, value and
headers, plus `dlq.reason`, `dlq.source.topic`, `dlq.source.partition` and `dlq.source.offset`.

`publish` returns only when Kafka acknowledged every record (acks=all, idempotent producer), so the
batch's state commit that follows can never lose a DLQ record. A crash between the acknowledgement
and the state commit re-sends that record once after the restart (the DLQ is at-least-once).

Every record a client could write has a copy that can be written:
- header keys keep their original bytes (even non-UTF-8) and null header values become empty ones,
  named in `dlq.null.headers` (kafka_records.writable_headers);
- a copy larger than `max_copy_bytes` (the source record plus our headers can exceed the request
  limit) is replaced by a reference copy: the source position headers, `dlq.truncated`,
  `dlq.original.value.bytes` and the first TRUNCATED_VALUE_BYTES of the value, no original headers;
- a copy the broker refuses for good (a non-retriable error, e.g. a smaller limit on the DLQ topic)
  is retried once as a reference copy. A retriable failure (broker or DLQ topic unreachable) raises
  DlqPublishError: the batch is not committed and is retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.record.default_records import DefaultRecordBatchBuilder

from sumflow.adapters.accumulator_ports import DlqPublishError
from sumflow.adapters.kafka_records import writable_headers
from sumflow.domain.ledger import Rejected

log = logging.getLogger(__name__)

DEFAULT_MAX_COPY_BYTES = 1_000_000  # below the producer's and broker's default limits (1 MiB)
TRUNCATED_VALUE_BYTES = 1024
REQUEST_OVERHEAD_BYTES = 64 * 1024  # room above one record for the produce request around it


def _position_headers(item: Rejected, source_topic: str) -> list[tuple[str, bytes]]:
    return [
        ("dlq.reason", item.reason.encode()),
        ("dlq.source.topic", source_topic.encode()),
        ("dlq.source.partition", str(item.record.partition).encode()),
        ("dlq.source.offset", str(item.record.offset).encode()),
    ]


def dlq_headers(item: Rejected, source_topic: str) -> list[tuple[str, bytes]]:
    original = [(k, v) for k, v in (item.record.headers or ()) if not k.startswith("dlq.")]
    return writable_headers(original) + _position_headers(item, source_topic)


def _value(item: Rejected) -> bytes:
    # kafka-python refuses a record with neither key nor value: keep it, empty
    value = item.record.value
    return value if value is not None or item.record.key else b""


def full_copy(item: Rejected, source_topic: str) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    return item.record.key, _value(item), dlq_headers(item, source_topic)


def reference_copy(item: Rejected, source_topic: str) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """The record's position, reason and the start of its value: always small enough to write."""
    value = item.record.value or b""
    key = item.record.key
    headers = [
        *_position_headers(item, source_topic),
        ("dlq.truncated", b"true"),
        ("dlq.original.value.bytes", str(len(value)).encode()),
    ]
    if key is not None and len(key) > TRUNCATED_VALUE_BYTES:
        headers.append(("dlq.original.key.bytes", str(len(key)).encode()))
        key = key[:TRUNCATED_VALUE_BYTES]
    return key, value[:TRUNCATED_VALUE_BYTES], headers


def copy_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)


class KafkaDlqPublisher:
    def __init__(
        self,
        bootstrap: tuple[str, ...],
        topic: str,
        source_topic: str,
        *,
        timeout_seconds: float = 30.0,
        max_copy_bytes: int = DEFAULT_MAX_COPY_BYTES,
        client_security: Mapping[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.source_topic = source_topic
        self.timeout_seconds = timeout_seconds
        self.max_copy_bytes = max_copy_bytes
        self._bootstrap = list(bootstrap)
        self._security = dict(client_security or {})
        self._producer: KafkaProducer | None = None  # created on first use: most runs never need it

    def _get(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id="sumflow-accumulator-dlq",
                acks="all",
                retries=5,
                request_timeout_ms=10000,
                delivery_timeout_ms=int(self.timeout_seconds * 1000),
                max_request_size=self.max_copy_bytes + REQUEST_OVERHEAD_BYTES,
                max_block_ms=int(self.timeout_seconds * 1000),
                **self._security,
            )
        return self._producer

    def _copy(self, item: Rejected) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        key, value, headers = full_copy(item, self.source_topic)
        if copy_size(key, value, headers) > self.max_copy_bytes:
            return reference_copy(item, self.source_topic)
        return key, value, headers

    def publish(self, rejected: Sequence[Rejected]) -> None:
        if not rejected:
            return
        producer = self._get()
        deadline = time.monotonic() + self.timeout_seconds
        try:
            futures = []
            for item in rejected:
                key, value, headers = self._copy(item)
                futures.append(producer.send(self.topic, key=key, value=value, headers=headers))
            producer.flush(timeout=max(0.1, deadline - time.monotonic()))
            for item, future in zip(rejected, futures, strict=True):
                try:
                    future.get(timeout=max(0.1, deadline - time.monotonic()))
                except KafkaError as exc:
                    if exc.retriable:
                        raise
                    self._send_reference(producer, item, exc, deadline)
        except Exception as exc:
            raise DlqPublishError(f"DLQ publish failed: {type(exc).__name__}: {exc}") from exc

    def _send_reference(self, producer: KafkaProducer, item: Rejected, refused: KafkaError, deadline: float) -> None:
        log.warning(
            "DLQ copy refused by Kafka; sending a reference copy",
            extra={"partition": item.record.partition, "offset": item.record.offset, "error": str(refused)},
        )
        key, value, headers = reference_copy(item, self.source_topic)
        future = producer.send(self.topic, key=key, value=value, headers=headers)
        producer.flush(timeout=max(0.1, deadline - time.monotonic()))
        future.get(timeout=max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None
