"""Dead-letter publisher: invalid records go to the DLQ topic with their original key, value and
headers, plus `dlq.reason`, `dlq.source.partition` and `dlq.source.offset` headers.

`publish` returns only when Kafka acknowledged every record (acks=all, idempotent producer), so the
batch's state commit that follows can never lose a DLQ record. A crash between the acknowledgement
and the state commit re-sends that record once after the restart (the DLQ is at-least-once).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from kafka import KafkaProducer

from sumflow.domain.ledger import Rejected


class DlqPublishError(RuntimeError):
    """Kafka did not acknowledge a DLQ record in time; the batch must not be committed."""


def dlq_headers(item: Rejected, source_topic: str) -> list[tuple[str, bytes]]:
    headers = [(k, v) for k, v in item.record.headers if not k.startswith("dlq.")]
    headers += [
        ("dlq.reason", item.reason.encode()),
        ("dlq.source.topic", source_topic.encode()),
        ("dlq.source.partition", str(item.record.partition).encode()),
        ("dlq.source.offset", str(item.record.offset).encode()),
    ]
    return headers


class KafkaDlqPublisher:
    def __init__(
        self, bootstrap: tuple[str, ...], topic: str, source_topic: str, *, timeout_seconds: float = 30.0
    ) -> None:
        self.topic = topic
        self.source_topic = source_topic
        self.timeout_seconds = timeout_seconds
        self._bootstrap = list(bootstrap)
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
            )
        return self._producer

    def publish(self, rejected: Sequence[Rejected]) -> None:
        if not rejected:
            return
        producer = self._get()
        deadline = time.monotonic() + self.timeout_seconds
        try:
            futures = [
                producer.send(
                    self.topic,
                    key=item.record.key,
                    # kafka-python refuses a record with neither key nor value: keep it, empty
                    value=item.record.value if item.record.value is not None or item.record.key else b"",
                    headers=dlq_headers(item, self.source_topic),
                )
                for item in rejected
            ]
            producer.flush(timeout=max(0.1, deadline - time.monotonic()))
            for future in futures:
                future.get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception as exc:
            raise DlqPublishError(f"DLQ publish failed: {exc}") from exc

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None
