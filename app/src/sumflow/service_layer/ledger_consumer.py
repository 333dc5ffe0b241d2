"""The accumulator's use case: poll a batch, apply it exactly once, commit it durably.

Two stages, one thread each (`run`): the consumer thread polls and decodes batch N+1 while the
ledger thread (`BatchCommitter`) applies batch N. Per batch, in the ledger thread and strictly in
poll order: de-duplicate (domain.ledger.apply_decoded with the SQLite window lookup), send
invalid records to the DLQ and wait for the acks, append the applied events to the audit log
(fsync), then ONE SQLite transaction (total, count, offsets, window rows, audit position), then
replace total.json and publish the in-memory snapshot that /api/total serves. Only one thread
ever reads or writes the ledger, so a batch is checked against every batch committed before it.
SQLite and fsync release the GIL: the commit of N overlaps the fetch and decode of N+1.

Replicas reading the same topic each apply every record; only the one built with a `dlq` (the DLQ
writer) produces the invalid records, the others (`dlq=None`) skip them exactly the same way
(offsets move on, counted, logged) without writing: one copy in the DLQ, not one per replica.

A failed commit (disk full, I/O error, DLQ unreachable) rolls back, truncates the audit back to the
committed position, seeks the consumer back to the committed offsets, reports not-ready, and
retries with backoff; nothing is lost and nothing is applied twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sumflow.adapters.accumulator_ports import AuditTrail, DeadLetters, EventSource, LedgerStore, TotalFile
from sumflow.adapters.audit_log import AuditPosition
from sumflow.domain.ledger import BatchOutcome, DecodedBatch, LedgerState, apply_decoded
from sumflow.observability import sdnotify
from sumflow.observability.accumulator_telemetry import AccumulatorTelemetry
from sumflow.service_layer.accumulator_status import AccumulatorStatus, failure_reason, make_snapshot
from sumflow.service_layer.batch_committer import BatchCommitter, CommitFailed

log = logging.getLogger(__name__)

BACKOFF_START = 0.2
BACKOFF_MAX = 5.0
GROUP_COMMIT_INTERVAL = 1.0
# Catch-up: when a poll comes back with at least CATCHUP_THRESHOLD records (a backlog), keep
# polling without waiting until CATCHUP_MAX_RECORDS or CATCHUP_MAX_SECONDS, and commit them as ONE
# batch: fewer fsyncs and transactions per event. Still one atomic commit per batch.
CATCHUP_THRESHOLD = 1000
CATCHUP_MAX_RECORDS = 10000
CATCHUP_MAX_SECONDS = 0.25


class LedgerConsumer:
    def __init__(
        self,
        *,
        store: LedgerStore,
        audit: AuditTrail,
        source_factory: Callable[[], EventSource],
        dlq: DeadLetters | None,
        status: AccumulatorStatus,
        telemetry: AccumulatorTelemetry,
        write_total: TotalFile,
        state: LedgerState,
        audit_position: AuditPosition,
        poll_timeout_ms: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.audit = audit
        self.source_factory = source_factory
        self.source: EventSource | None = None
        self.dlq = dlq
        self.status = status
        self.telemetry = telemetry
        self.write_total = write_total
        self.state = state
        self.audit_position = audit_position
        self.poll_timeout_ms = poll_timeout_ms
        self.clock = clock
        self.total_file_dirty = False
        self._backoff = BACKOFF_START
        self._last_group_commit = 0.0
        self._notified = False
        self._commit_failed = False  # the last batch commit failed: only a commit clears the error
        self._caught_up = False
        self._publish(state)

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """The consumer thread's body: returns after `stop` is set and the batches polled committed.

        Polls and decodes here; a BatchCommitter thread applies and commits the batches in order.
        """
        committer = BatchCommitter(self.process)
        try:
            while not stop.is_set():
                try:
                    committer.raise_failure()
                    batch = self.poll_batch()
                    if batch is not None:
                        committer.submit(batch)
                    elif committer.idle() and not committer.failed():
                        self._idle()
                    self._backoff = BACKOFF_START
                except Exception as exc:
                    committer.discard()  # waits for the batch in progress; drops the queued one
                    failure = committer.take_failure()
                    polling = failure is None and not isinstance(exc, CommitFailed)
                    self._fail(failure or exc, polling=polling)
                    stop.wait(self._backoff)
                    self._backoff = min(BACKOFF_MAX, self._backoff * 2)
        finally:
            committer.close()  # commits what was polled (the batch in progress and the queued one)
            self.status.stopping = True
            self.telemetry.ready(False)
            self._shutdown()

    def _shutdown(self) -> None:
        if self.source is not None:
            if self.status.error is None:
                self.source.commit_group_offsets(self.state.next_offsets, wait=True)
            self.source.close()
        if self.dlq is not None:
            self.dlq.close()
        self.audit.close()
        try:
            self.store.checkpoint()
        except Exception as exc:
            log.warning("WAL checkpoint at shutdown failed", extra={"error": str(exc)})
        self.store.close()

    def _connect(self) -> EventSource:
        if self.source is None:
            self.source = self.source_factory()
        return self.source

    def step(self) -> int:
        """One synchronous iteration: poll, decode, apply and commit. Returns the records polled."""
        batch = self.poll_batch()
        if batch is None:
            self._idle()
            return 0
        self.process(batch)
        return len(batch)

    def poll_batch(self) -> DecodedBatch | None:
        """(Re)assign partitions, poll, decode. A backlog is merged into one batch (catch-up)."""
        source = self._connect()
        if source.refresh_assignment(self.state.next_offsets, force=not source.partitions):
            self.status.partitions_assigned = True
            self._update_ready()
        records = source.poll(self.poll_timeout_ms)
        batch = None
        if records:
            batch = DecodedBatch()
            batch.add(records)
            if len(records) >= CATCHUP_THRESHOLD:
                deadline = time.monotonic() + CATCHUP_MAX_SECONDS
                while len(batch) < CATCHUP_MAX_RECORDS and time.monotonic() < deadline:
                    more = source.poll(0)
                    if not more:
                        break
                    batch.add(more)
        lags = source.lag()
        self.telemetry.lag(lags)
        # caught up: every partition's position known and nothing beyond it (progress once the
        # batches polled before are committed: see _idle)
        self._caught_up = batch is None and len(lags) == len(source.partitions) and not any(lags.values())
        return batch

    def _idle(self) -> None:
        """Nothing polled (and nothing being committed): retry total.json, clear a stale error."""
        if self._caught_up and not self._commit_failed:
            self.status.progressed()
        if self.total_file_dirty:
            self._write_total_file()
        if self.status.error is not None and not self._commit_failed:
            self.status.error = None  # a connection/file error that no longer occurs
            self._update_ready()

    # -- one batch --------------------------------------------------------------------------------

    def process(self, batch: DecodedBatch) -> BatchOutcome:
        """Apply and commit one decoded batch (the ledger thread, or step())."""
        started = time.perf_counter()
        outcome = apply_decoded(self.state, batch, self.store.already_applied)
        self.telemetry.batch_decided(batch, outcome)
        new_state = outcome.state
        if new_state.next_offsets == self.state.next_offsets:
            self.status.progressed()
            return outcome  # only redeliveries: nothing to commit
        spans = self.telemetry.spans(batch, outcome, self._topic())
        now = self.clock()
        if outcome.rejected and self.dlq is not None:
            try:
                self.dlq.publish(outcome.rejected)
            except BaseException:
                self._commit_failed = True
                if spans is not None:
                    spans.end()
                raise
        if spans is not None:
            spans.start_commit(len(outcome.applied))
        try:
            position = self.audit.append_events(outcome.applied, now)
            self.store.commit_batch(new_state, outcome.applied, position, now)
        except BaseException as exc:
            self._commit_failed = True
            if spans is not None:
                spans.commit_failed(exc)
            raise
        self._commit_failed = False
        self.status.progressed()
        if self.status.error is not None:
            log.info("state commit recovered")
            self.status.error = None
            self._update_ready()
        self.audit_position = position
        self.state = new_state
        self._publish(new_state)
        if spans is not None:
            spans.end()
        self.telemetry.batch_committed(batch, outcome, new_state, now, time.perf_counter() - started)
        self._log_outcome(outcome)
        self._write_total_file()
        self._commit_group_offsets()
        return outcome

    # -- helpers ----------------------------------------------------------------------------------

    def _log_outcome(self, outcome: BatchOutcome) -> None:
        if outcome.duplicates:
            log.info(
                "duplicate request ids dropped",
                extra={"count": len(outcome.duplicates), "request_id": outcome.duplicates[0].request_id},
            )
        written = self.dlq is not None
        message = "invalid event sent to the DLQ" if written else "invalid event skipped (not the DLQ writer)"
        for item in outcome.rejected:
            log.warning(
                message,
                extra={"reason": item.reason, "partition": item.record.partition, "offset": item.record.offset},
            )

    def _publish(self, state: LedgerState) -> None:
        self.status.snapshot = make_snapshot(state)

    def _write_total_file(self) -> None:
        try:
            self.write_total(self.state, self.clock())
            self.total_file_dirty = False
        except OSError:
            self.total_file_dirty = True
            raise

    def _commit_group_offsets(self) -> None:
        now = time.monotonic()
        if self.source is not None and now - self._last_group_commit >= GROUP_COMMIT_INTERVAL:
            self._last_group_commit = now
            self.source.commit_group_offsets(self.state.next_offsets)

    def _update_ready(self) -> None:
        ready, _ = self.status.readiness()
        self.telemetry.ready(ready)
        if ready and not self._notified:
            self._notified = True
            sdnotify.notify("READY=1")
            log.info(
                "accumulator ready",
                extra={
                    "total": str(self.state.total),
                    "applied": self.state.applied,
                    "offsets": self.state.next_offsets,
                },
            )

    def _fail(self, exc: Exception, *, polling: bool = False) -> None:
        """After a failed step: count it, report not-ready, return audit and consumer to the committed state."""
        self.telemetry.state_error()
        self.status.error = failure_reason(exc, polling=polling)
        self._update_ready()
        log.error("batch failed; will retry from the committed state", extra={"error": self.status.error})
        try:
            self.audit.recover(self.audit_position)
        except Exception as again:
            log.error("audit rollback failed", extra={"error": str(again)})
        if self.source is not None:
            try:
                self.source.seek(self.state.next_offsets)
            except Exception as again:
                log.error("seek back failed", extra={"error": str(again)})

    def _topic(self) -> str:
        return self.source.topic if self.source is not None else ""
