"""The summation topic read once, from the beginning of every partition up to its end (the rebuild).

No consumer group, `read_committed` and lenient header keys: the same records the service reads
(see event_source).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from sumflow.adapters.kafka_records import install_lenient_header_keys
from sumflow.domain.ledger import ConsumedRecord


class KafkaTopicReader:
    def __init__(
        self,
        bootstrap: tuple[str, ...],
        topic: str,
        *,
        client_id: str = "sumflow-accumulator-rebuild",
        max_poll_records: int = 10000,
        poll_timeout_ms: int = 500,
        client_security: Mapping[str, Any] | None = None,  # adapters.kafka_security kwargs
    ) -> None:
        install_lenient_header_keys()
        self.topic = topic
        self.servers = ",".join(bootstrap)
        self.poll_timeout_ms = poll_timeout_ms
        self._consumer = KafkaConsumer(
            bootstrap_servers=list(bootstrap),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id=client_id,
            max_poll_records=max_poll_records,
            **dict(client_security or {}),
        )
        self._ends: dict[int, int] = {}
        self._remaining: list[TopicPartition] = []

    def bounds(self) -> tuple[dict[int, int], dict[int, int]]:
        """(first offset, end offset) per partition, and the read positioned at the first; ({}, {}) if no topic."""
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        if not partitions:
            return {}, {}
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)
        self._ends = {tp.partition: off for tp, off in self._consumer.end_offsets(tps).items()}
        starts = {tp.partition: off for tp, off in self._consumer.beginning_offsets(tps).items()}
        self._remaining = tps
        self._update_remaining()
        return starts, dict(self._ends)

    def poll(self) -> list[ConsumedRecord]:
        """The next records below the end offsets, in partition order ([] if none came in time)."""
        records: list[ConsumedRecord] = []
        for tp, messages in self._consumer.poll(timeout_ms=self.poll_timeout_ms).items():
            end = self._ends[tp.partition]
            for message in messages:
                if message.offset >= end:
                    break
                records.append(message)
        self._update_remaining()
        return records

    def done(self) -> bool:
        return not self._remaining

    def _update_remaining(self) -> None:
        self._remaining = [tp for tp in self._remaining if self._consumer.position(tp) < self._ends[tp.partition]]

    def close(self) -> None:
        self._consumer.close(autocommit=False)
