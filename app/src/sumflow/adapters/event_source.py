"""Kafka consumer for the summation topic: manual assignment of every partition, no group rebalance.

The consumer group id is used only to commit offsets after our own state commit, so that lag is
visible to Kafka tools. Kafka's committed offsets are never read back: on start the accumulator
seeks each partition to the next offset stored in its own state.

The fetching consumer has NO group id: kafka-python (3.0) makes every poll of a consumer with a
group id wait for the group coordinator first, even with manual assignment, and fetches nothing
until it is found. After a broker restart (or the first use of `__consumer_offsets`) the coordinator
takes seconds to load, so the service was ready but applied nothing. The group offsets are
committed instead by GroupOffsetCommitter: its own consumer, in its own thread, latest offsets only.

Every record a standard client can write is read: batches compressed with any codec the broker
accepts (gzip, snappy, lz4, zstd: their libraries are dependencies), header keys that are not UTF-8
(kafka_records), and only committed transactions (`read_committed`: an aborted transaction's events
are never seen). A batch that still cannot be read (corrupt on disk) raises RecordsUnreadable naming
the partition and offset, every poll: the consumer reports it on /readyz, and the stall detector
makes /healthz fail so that systemd restarts the service and an operator is alerted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from sumflow.adapters.kafka_records import install_lenient_header_keys
from sumflow.domain.ledger import ConsumedRecord

log = logging.getLogger(__name__)


class RecordsUnreadable(RuntimeError):
    """Kafka returned records the client cannot decode (the message names partition and offset)."""


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
        client_security: Mapping[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.max_poll_records = max_poll_records
        self.partition_check_seconds = partition_check_seconds
        install_lenient_header_keys()
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._security = dict(client_security or {})
        self._consumer = self._new_consumer()
        self._assigned: dict[int, TopicPartition] = {}
        self._last_check = 0.0
        self._committer = GroupOffsetCommitter(
            bootstrap, topic, group_id, client_id=f"{client_id}-group", client_security=self._security
        )

    def _new_consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=list(self._bootstrap),
            group_id=None,  # see the module docstring: the group is GroupOffsetCommitter's
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # an aborted transaction's events are never counted
            max_poll_records=self.max_poll_records,
            max_partition_fetch_bytes=1 << 20,  # ~5k events: bounded RSS (3 partitions)
            fetch_max_bytes=4 << 20,
            metadata_max_age_ms=int(self.partition_check_seconds * 1000),
            request_timeout_ms=30000,
            reconnect_backoff_max_ms=2000,
            **self._security,
        )

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

    def poll(self, timeout_ms: int) -> list[ConsumedRecord]:
        """The Kafka client's own records (partition, offset, key, value, headers): no copy per record."""
        if not self._assigned:
            time.sleep(timeout_ms / 1000)
            return []
        try:
            polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=self.max_poll_records)
        except KafkaError as exc:
            if exc.retriable:
                raise
            where = self._positions()
            # kafka-python (3.0) keeps the failed fetch and spins in its next poll: start afresh; the
            # next refresh_assignment seeks to the committed offsets and the poll raises again
            self._consumer.close(autocommit=False)
            self._consumer = self._new_consumer()
            self._assigned = {}
            raise RecordsUnreadable(f"{where}: {type(exc).__name__}: {exc}") from exc
        records: list[ConsumedRecord] = []
        for messages in polled.values():
            records.extend(messages)
        return records

    def _positions(self) -> str:
        """Where the consumer stands: `topic[partition]@offset ...` (for an error message)."""
        parts = []
        for partition, tp in sorted(self._assigned.items()):
            try:
                parts.append(f"{self.topic}[{partition}]@{self._consumer.position(tp, timeout_ms=0)}")
            except Exception:
                parts.append(f"{self.topic}[{partition}]")
        return " ".join(parts)

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
        offsets = {p: o for p, o in next_offsets.items() if p in self._assigned}
        if offsets:
            self._committer.submit(offsets, wait_s=5.0 if wait else 0.0)

    def end_offsets(self) -> dict[int, int]:
        ends = self._consumer.end_offsets(list(self._assigned.values()))
        return {tp.partition: offset for tp, offset in ends.items()}

    def close(self) -> None:
        self._committer.close()
        self._consumer.close(autocommit=False)


class GroupOffsetCommitter:
    """Commits the latest submitted offsets to the consumer group from a thread of its own.

    Its KafkaConsumer only commits (no assignment, no fetch). A slow or absent group coordinator
    blocks this thread only; submissions in the meantime collapse into the newest one.
    """

    def __init__(
        self,
        bootstrap: tuple[str, ...],
        topic: str,
        group_id: str,
        *,
        client_id: str,
        client_security: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.client_security = dict(client_security or {})
        self.topic = topic
        self.group_id = group_id
        self.client_id = client_id
        self._cond = threading.Condition()
        self._pending: dict[int, int] | None = None
        self._submitted = 0  # tickets: a waiting submit() returns once its offsets were tried
        self._done = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="group-offsets", daemon=True)
        self._thread.start()

    def submit(self, offsets: Mapping[int, int], *, wait_s: float = 0.0) -> None:
        with self._cond:
            if self._closed:
                return
            self._pending = dict(offsets)
            self._submitted += 1
            ticket = self._submitted
            self._cond.notify_all()
            if wait_s > 0:
                self._cond.wait_for(lambda: self._done >= ticket or not self._thread.is_alive(), wait_s)

    def close(self, timeout_s: float = 6.0) -> None:
        """Commit what is pending (bounded by `timeout_s`), then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        consumer: KafkaConsumer | None = None
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._pending is not None or self._closed)
                    offsets, self._pending = self._pending, None
                    ticket = self._submitted
                if offsets is None:
                    return  # closed and nothing left to commit
                try:
                    if consumer is None:
                        consumer = KafkaConsumer(
                            bootstrap_servers=list(self.bootstrap),
                            group_id=self.group_id,
                            client_id=self.client_id,
                            enable_auto_commit=False,
                            request_timeout_ms=30000,
                            reconnect_backoff_max_ms=2000,
                            **self.client_security,
                        )
                    consumer.commit(
                        {TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()},
                        timeout_ms=5000,
                    )
                except Exception as exc:
                    log.warning("group offset commit failed", extra={"error": str(exc)})
                with self._cond:
                    self._done = ticket
                    self._cond.notify_all()
        finally:
            if consumer is not None:
                consumer.close(autocommit=False)
