"""The accumulator's consumer loop: poll a batch, apply it exactly once, commit it durably.

Two stages, one thread each (`run`): the consumer thread polls and decodes batch N+1 while the
ledger thread (`BatchCommitter`) applies batch N. Per batch, in the ledger thread and strictly in
poll order: de-duplicate (domain.ledger.apply_decoded with the SQLite window lookup), send
invalid records to the DLQ and wait for the acks, append the applied events to the audit log
(fsync), then ONE SQLite transaction (total, count, offsets, window rows, audit position), then
replace total.json and publish the in-memory snapshot that /api/total serves. Only one thread
ever reads or writes the ledger, so a batch is checked against every batch committed before it.
SQLite and fsync release the GIL: the commit of N overlaps the fetch and decode of N+1.

A failed commit (disk full, I/O error, DLQ unreachable) rolls back, truncates the audit back to the
committed position, seeks the consumer back to the committed offsets, reports not-ready, and
retries with backoff; nothing is lost and nothing is applied twice.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from prometheus_client import Histogram

from sumflow.adapters.audit_log import AuditLog, AuditPosition
from sumflow.adapters.dlq_publisher import DlqPublishError
from sumflow.adapters.ledger_store import LedgerStore
from sumflow.adapters.total_file import write_total_file
from sumflow.domain.ledger import BatchOutcome, ConsumedRecord, DecodedBatch, LedgerState, apply_decoded
from sumflow.observability import sdnotify
from sumflow.observability.metrics import AccumulatorMetrics
from sumflow.observability.tracing import context_from_headers

log = logging.getLogger(__name__)

MAX_COMMIT_LINKS = 128
BACKOFF_START = 0.2
BACKOFF_MAX = 5.0
GROUP_COMMIT_INTERVAL = 1.0
# Catch-up: when a poll comes back with at least CATCHUP_THRESHOLD records (a backlog), keep
# polling without waiting until CATCHUP_MAX_RECORDS or CATCHUP_MAX_SECONDS, and commit them as ONE
# batch: fewer fsyncs and transactions per event. Still one atomic commit per batch.
CATCHUP_THRESHOLD = 1000
CATCHUP_MAX_RECORDS = 10000
CATCHUP_MAX_SECONDS = 0.25


class EventSource(Protocol):
    topic: str

    @property
    def partitions(self) -> list[int]: ...
    def refresh_assignment(self, next_offsets: dict[int, int], *, force: bool = False) -> list[int]: ...
    def seek(self, next_offsets: dict[int, int]) -> None: ...
    def poll(self, timeout_ms: int) -> list[ConsumedRecord]: ...
    def lag(self) -> dict[int, int]: ...
    def commit_group_offsets(self, next_offsets: dict[int, int], *, wait: bool = False) -> None: ...
    def close(self) -> None: ...


class DlqPublisher(Protocol):
    def publish(self, rejected: list) -> None: ...
    def close(self) -> None: ...


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
    """What the HTTP threads read: the latest committed snapshot, readiness and health.

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


def traceparent_trace_id(headers: Iterable[tuple[str, bytes | None]]) -> str | None:
    """The trace id of a W3C traceparent header, without the propagator (cheap)."""
    for key, value in headers:
        if key == "traceparent" and value:  # a header value may be null
            parts = value.split(b"-")
            if len(parts) == 4 and len(parts[1]) == 32:
                return parts[1].decode("ascii", "replace")
    return None


class LedgerConsumer:
    def __init__(
        self,
        *,
        store: LedgerStore,
        audit: AuditLog,
        source_factory: Callable[[], EventSource],
        dlq: DlqPublisher,
        status: AccumulatorStatus,
        metrics: AccumulatorMetrics,
        state_dir: Path,
        state: LedgerState,
        audit_position: AuditPosition,
        tracer: trace.Tracer | None = None,
        poll_timeout_ms: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.audit = audit
        self.source_factory = source_factory
        self.source: EventSource | None = None
        self.dlq = dlq
        self.status = status
        self.metrics = metrics
        self.state_dir = state_dir
        self.state = state
        self.audit_position = audit_position
        self.tracer = tracer
        self.tracing = tracer is not None and tracer.__class__.__module__.startswith("opentelemetry.sdk")
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
        committer = BatchCommitter(self)
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
            self.metrics.ready.set(0)
            self._shutdown()

    def _shutdown(self) -> None:
        if self.source is not None:
            if self.status.error is None:
                self.source.commit_group_offsets(self.state.next_offsets, wait=True)
            self.source.close()
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
        for partition, lag in lags.items():
            self.metrics.consumer_lag.labels(str(partition)).set(lag)
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
        self.metrics.batch_size.observe(len(batch))
        if outcome.redelivered:
            self.metrics.redeliveries.inc(outcome.redelivered)
        new_state = outcome.state
        if new_state.next_offsets == self.state.next_offsets:
            self.status.progressed()
            return outcome  # only redeliveries: nothing to commit
        spans = self._start_spans(batch, outcome) if self.tracing else []
        now = self.clock()
        if outcome.rejected:
            try:
                self.dlq.publish(outcome.rejected)
            except BaseException:
                self._commit_failed = True
                for span in spans:
                    span.end()
                raise
        applied = outcome.applied
        commit_span = self._start_commit_span(spans, len(applied)) if spans else None
        try:
            position = self.audit.append_events(applied, now)
            self.store.commit_batch(new_state, applied, position, now)
        except BaseException as exc:
            self._commit_failed = True
            if commit_span is not None:
                commit_span.set_status(Status(StatusCode.ERROR, str(exc)))
                commit_span.end()
            for span in spans:
                span.set_status(Status(StatusCode.ERROR, "state commit failed"))
                span.end()
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
        if commit_span is not None:
            commit_span.end()
        for span in spans:
            span.end()
        self._record_metrics(batch, outcome, now, time.perf_counter() - started)
        self._write_total_file()
        self._commit_group_offsets()
        return outcome

    def _record_metrics(self, batch: DecodedBatch, outcome: BatchOutcome, now: float, duration: float) -> None:
        m = self.metrics
        m.batch_duration.observe(duration)
        if outcome.applied:
            m.events_applied.inc(len(outcome.applied))
            now_ms = now * 1000
            latencies = [max(0.0, (now_ms - ev.produced_at_ms) / 1000) for ev in outcome.applied]
            slowest_at = max(range(len(latencies)), key=latencies.__getitem__)
            slowest = outcome.applied[slowest_at]
            observe_many(m.end_to_end_latency, latencies[:slowest_at] + latencies[slowest_at + 1 :])
            # the batch's slowest event carries the exemplar: the trace id from its traceparent header
            trace_id = traceparent_trace_id(batch.headers.get((slowest.partition, slowest.offset), ()))
            m.end_to_end_latency.observe(latencies[slowest_at], exemplar={"trace_id": trace_id} if trace_id else None)
        if outcome.duplicates:
            m.duplicates_dropped.inc(len(outcome.duplicates))
            log.info(
                "duplicate request ids dropped",
                extra={"count": len(outcome.duplicates), "request_id": outcome.duplicates[0].request_id},
            )
        for item in outcome.rejected:
            m.dlq_events.labels(item.code.value).inc()
            log.warning(
                "invalid event sent to the DLQ",
                extra={"reason": item.reason, "partition": item.record.partition, "offset": item.record.offset},
            )
        m.total.set(self.state.total)
        m.applied.set(self.state.applied)

    # -- helpers ----------------------------------------------------------------------------------

    def _publish(self, state: LedgerState) -> None:
        self.status.snapshot = make_snapshot(state)

    def _write_total_file(self) -> None:
        try:
            write_total_file(self.state_dir, self.state, self.clock())
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
        self.metrics.ready.set(1 if ready else 0)
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
        self.metrics.state_errors.inc()
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

    def _start_spans(self, batch: DecodedBatch, outcome: BatchOutcome) -> list[trace.Span]:
        assert self.tracer is not None
        spans = []
        kinds = [("applied", a.partition, a.offset, a.request_id, a.result) for a in outcome.applied]
        kinds += [("duplicate", a.partition, a.offset, a.request_id, a.result) for a in outcome.duplicates]
        kinds += [("rejected", r.record.partition, r.record.offset, None, None) for r in outcome.rejected]
        for kind, partition, offset, request_id, result in kinds:
            parent = context_from_headers(batch.headers.get((partition, offset), ()))
            attributes: dict[str, str | int] = {
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": self._topic(),
                "messaging.destination.partition.id": str(partition),
                "messaging.kafka.offset": offset,
                "sumflow.outcome": kind,
            }
            if request_id is not None:
                attributes["sumflow.request_id"] = request_id
                attributes["sumflow.result"] = str(result)
            spans.append(
                self.tracer.start_span(
                    "summation process", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
                )
            )
        return spans

    def _start_commit_span(self, spans: list[trace.Span], applied: int) -> trace.Span:
        """One `ledger commit` span per batch: child of the first event's span, linked to the others."""
        assert self.tracer is not None
        parent = trace.set_span_in_context(spans[0])
        links = [Link(s.get_span_context()) for s in spans[1 : 1 + MAX_COMMIT_LINKS]]
        return self.tracer.start_span(
            "ledger commit",
            context=parent,
            links=links,
            attributes={"sumflow.batch.events": len(spans), "sumflow.batch.applied": applied},
        )

    def _topic(self) -> str:
        return self.source.topic if self.source is not None else ""


class BatchCommitter:
    """The ledger thread: applies and commits decoded batches in submission order.

    At most one batch waits while one commits (bounded memory, backpressure on polling). After a
    failure it refuses new batches until the consumer thread has taken the error and rewound
    (`discard` + `LedgerConsumer._fail`): nothing after the failed batch is ever applied.
    """

    def __init__(self, consumer: LedgerConsumer) -> None:
        self.consumer = consumer
        self._queue: queue.Queue[DecodedBatch | None] = queue.Queue(maxsize=1)
        self._lock = threading.Lock()
        self._busy = 0  # batches submitted and not yet finished
        self._done = threading.Condition(self._lock)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ledger", daemon=True)
        self._thread.start()

    def submit(self, batch: DecodedBatch) -> None:
        self.raise_failure()
        with self._lock:
            self._busy += 1
        self._queue.put(batch)

    def idle(self) -> bool:
        with self._lock:
            return self._busy == 0

    def failed(self) -> bool:
        with self._lock:
            return self._failure is not None

    def raise_failure(self) -> None:
        with self._lock:
            failure = self._failure
        if failure is not None:
            raise CommitFailed(str(failure)) from failure

    def take_failure(self) -> BaseException | None:
        with self._lock:
            failure, self._failure = self._failure, None
        if isinstance(failure, Exception):
            return failure
        return None

    def discard(self) -> None:
        """Drop the queued batch and wait for the one in progress: afterwards the ledger thread is idle."""
        try:
            while True:
                if self._queue.get_nowait() is not None:
                    with self._lock:
                        self._busy -= 1
                        self._done.notify_all()
        except queue.Empty:
            pass
        with self._done:
            self._done.wait_for(lambda: self._busy == 0 or not self._thread.is_alive())

    def close(self) -> None:
        """Commit what was submitted (unless a batch failed), then stop the thread."""
        self._queue.put(None)
        self._thread.join()
        self.take_failure()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            try:
                with self._lock:
                    failed = self._failure is not None
                if not failed:  # a batch after a failed one is never applied
                    self.consumer.process(batch)
            except BaseException as exc:  # handed to the consumer thread
                with self._lock:
                    self._failure = exc
            finally:
                with self._lock:
                    self._busy -= 1
                    self._done.notify_all()


class CommitFailed(RuntimeError):
    """The ledger thread failed a batch; the consumer thread rewinds to the committed state."""


def observe_many(histogram: Histogram, values: list[float]) -> None:
    """Histogram.observe for many values at once: bucket counts via bisect, one increment per bucket.

    Uses prometheus_client's (pinned) internals `_upper_bounds/_buckets/_sum`; falls back to observe().
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1  # first bound >= value, as observe() does
    for i, count in enumerate(counts):
        if count:
            buckets[i].inc(count)
    total.inc(sum(values))
