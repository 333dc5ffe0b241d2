"""Kafka consumer for the summation topic: manual assignment of every partition, no group rebalance.

The consumer group id is used only to commit offsets after our own state commit, so that lag is
visible to Kafka tools. Kafka's committed offsets are never read back: on start the accumulator
seeks each partition to the next offset stored in its own state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from sumflow.domain.ledger import Record

log = logging.getLogger(__name__)


class KafkaEventSource:
    def __init__(
        self,
        bootstrap: tuple[str, ...],
        topic: str,
        group_id: str,
        *,
        max_poll_records: int,
        partition_check_seconds: float = 5.0,
        client_id: str = "sumflow-accumulator",
    ) -> None:
        self.topic = topic
        self.max_poll_records = max_poll_records
        self.partition_check_seconds = partition_check_seconds
        self._consumer = KafkaConsumer(
            bootstrap_servers=list(bootstrap),
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_poll_records,
            max_partition_fetch_bytes=4 << 20,
            fetch_max_bytes=16 << 20,
            metadata_max_age_ms=int(partition_check_seconds * 1000),
            request_timeout_ms=30000,
            reconnect_backoff_max_ms=2000,
        )
        self._assigned: dict[int, TopicPartition] = {}
        self._last_check = 0.0

    @property
    def partitions(self) -> list[int]:
        return sorted(self._assigned)

    def refresh_assignment(self, next_offsets: Mapping[int, int], *, force: bool = False) -> list[int]:
        """Assign every partition of the topic (new ones too); seek new ones to their stored offset.

        Returns the partitions newly assigned. An absent topic leaves the assignment empty.
        """
        now = time.monotonic()
        if not force and now - self._last_check < self.partition_check_seconds:
            return []
        self._last_check = now
        found = self._consumer.partitions_for_topic(self.topic) or set()
        new = sorted(set(found) - set(self._assigned))
        if not new:
            return []
        for partition in new:
            self._assigned[partition] = TopicPartition(self.topic, partition)
        self._consumer.assign(list(self._assigned.values()))
        # assign() keeps no positions we trust: seek every partition to the state's offsets
        self.seek(next_offsets)
        log.info("partitions assigned", extra={"partitions": self.partitions})
        return new

    def seek(self, next_offsets: Mapping[int, int]) -> None:
        """Position every assigned partition at the stored next offset (the beginning if none)."""
        unknown = []
        for partition, tp in self._assigned.items():
            offset = next_offsets.get(partition)
            if offset is None:
                unknown.append(tp)
            else:
                self._consumer.seek(tp, offset)
        if unknown:
            self._consumer.seek_to_beginning(*unknown)

    def poll(self, timeout_ms: int) -> list[Record]:
        if not self._assigned:
            time.sleep(timeout_ms / 1000)
            return []
        polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=self.max_poll_records)
        records: list[Record] = []
        for tp, messages in polled.items():
            partition = tp.partition
            records.extend(
                Record(partition, m.offset, m.key, m.value, tuple(m.headers) if m.headers else ()) for m in messages
            )
        return records

    def lag(self) -> dict[int, int]:
        """Highwater minus position per partition, from the last fetch responses (no round trip)."""
        result = {}
        for partition, tp in self._assigned.items():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = self._consumer.position(tp, timeout_ms=0)
            except Exception:  # noqa: S112 - position not known yet: skip this round
                continue
            if position is not None:
                result[partition] = max(0, high - position)
        return result

    def commit_group_offsets(self, next_offsets: Mapping[int, int], *, wait: bool = False) -> None:
        """Best effort: tell the group where we are (for lag tools); failures only log."""
        offsets = {
            self._assigned[p]: OffsetAndMetadata(o, "", -1) for p, o in next_offsets.items() if p in self._assigned
        }
        if not offsets:
            return
        try:
            if wait:
                self._consumer.commit(offsets, timeout_ms=5000)
            else:
                self._consumer.commit_async(offsets)
        except Exception as exc:
            log.warning("group offset commit failed", extra={"error": str(exc)})

    def end_offsets(self) -> dict[int, int]:
        ends = self._consumer.end_offsets(list(self._assigned.values()))
        return {tp.partition: offset for tp, offset in ends.items()}

    def close(self) -> None:
        self._consumer.close(autocommit=False)
