"""The accumulator's metrics and spans per batch: what the ledger consumer reports, in one place.

- `AccumulatorTelemetry` updates the Prometheus metrics (observability.metrics.AccumulatorMetrics):
  readiness, lag, batch sizes and durations, events applied, duplicates, DLQ events by reason code,
  end-to-end latency (the batch's slowest event carries the trace id of its traceparent as exemplar).
- `BatchSpans`: one `summation process` span per record of a batch (child of the producer's span
  from the record's traceparent header) and one `ledger commit` span, when an SDK tracer is set.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from prometheus_client import Histogram

from sumflow.domain.ledger import BatchOutcome, DecodedBatch, LedgerState
from sumflow.observability.metrics import AccumulatorMetrics
from sumflow.observability.tracing import context_from_headers

MAX_COMMIT_LINKS = 128


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


def traceparent_trace_id(headers: Iterable[tuple[str, bytes | None]]) -> str | None:
    """The trace id of a W3C traceparent header, without the propagator (cheap)."""
    for key, value in headers:
        if key == "traceparent" and value:  # a header value may be null
            parts = value.split(b"-")
            if len(parts) == 4 and len(parts[1]) == 32:
                return parts[1].decode("ascii", "replace")
    return None


class BatchSpans:
    """The spans of one batch: started when the batch is decided, ended when it committed or failed."""

    def __init__(self, tracer: trace.Tracer, batch: DecodedBatch, outcome: BatchOutcome, topic: str) -> None:
        self.tracer = tracer
        self.commit: trace.Span | None = None
        kinds = [("applied", a.partition, a.offset, a.request_id, a.result) for a in outcome.applied]
        kinds += [("duplicate", a.partition, a.offset, a.request_id, a.result) for a in outcome.duplicates]
        kinds += [("rejected", r.record.partition, r.record.offset, None, None) for r in outcome.rejected]
        self.spans: list[trace.Span] = []
        for kind, partition, offset, request_id, result in kinds:
            parent = context_from_headers(batch.headers.get((partition, offset), ()))
            attributes: dict[str, str | int] = {
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(partition),
                "messaging.kafka.offset": offset,
                "sumflow.outcome": kind,
            }
            if request_id is not None:
                attributes["sumflow.request_id"] = request_id
                attributes["sumflow.result"] = str(result)
            self.spans.append(
                tracer.start_span("summation process", context=parent, kind=SpanKind.CONSUMER, attributes=attributes)
            )

    def start_commit(self, applied: int) -> None:
        """One `ledger commit` span per batch: child of the first event's span, linked to the others."""
        if not self.spans:
            return
        parent = trace.set_span_in_context(self.spans[0])
        links = [Link(s.get_span_context()) for s in self.spans[1 : 1 + MAX_COMMIT_LINKS]]
        self.commit = self.tracer.start_span(
            "ledger commit",
            context=parent,
            links=links,
            attributes={"sumflow.batch.events": len(self.spans), "sumflow.batch.applied": applied},
        )

    def commit_failed(self, exc: BaseException) -> None:
        if self.commit is not None:
            self.commit.set_status(Status(StatusCode.ERROR, str(exc)))
            self.commit.end()
        for span in self.spans:
            span.set_status(Status(StatusCode.ERROR, "state commit failed"))
            span.end()

    def end(self) -> None:
        if self.commit is not None:
            self.commit.end()
        for span in self.spans:
            span.end()


class AccumulatorTelemetry:
    def __init__(self, metrics: AccumulatorMetrics, tracer: trace.Tracer | None = None) -> None:
        self.metrics = metrics
        self.tracer = tracer
        # the no-op tracer (no endpoint configured) costs a span per event for nothing: skip it
        self.tracing = tracer is not None and tracer.__class__.__module__.startswith("opentelemetry.sdk")

    def ready(self, ready: bool) -> None:
        self.metrics.ready.set(1 if ready else 0)

    def lag(self, lags: dict[int, int]) -> None:
        for partition, lag in lags.items():
            self.metrics.consumer_lag.labels(str(partition)).set(lag)

    def state_error(self) -> None:
        self.metrics.state_errors.inc()

    def state(self, state: LedgerState) -> None:
        self.metrics.total.set(state.total)
        self.metrics.applied.set(state.applied)

    def batch_decided(self, batch: DecodedBatch, outcome: BatchOutcome) -> None:
        self.metrics.batch_size.observe(len(batch))
        if outcome.redelivered:
            self.metrics.redeliveries.inc(outcome.redelivered)

    def spans(self, batch: DecodedBatch, outcome: BatchOutcome, topic: str) -> BatchSpans | None:
        return BatchSpans(self.tracer, batch, outcome, topic) if self.tracing and self.tracer is not None else None

    def batch_committed(
        self, batch: DecodedBatch, outcome: BatchOutcome, state: LedgerState, now: float, duration: float
    ) -> None:
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
        for item in outcome.rejected:
            m.dlq_events.labels(item.code.value).inc()
        self.state(state)
