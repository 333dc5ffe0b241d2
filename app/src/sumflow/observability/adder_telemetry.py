"""The adder's spans and metrics: what the use case and the gRPC servicer record per call.

Each part is a no-op when its side is off: no tracer, no spans and no `traceparent` header (the
no-op tracer still costs a context manager and a propagator call per call); no metrics, no samples.
Latency histograms get the trace id as exemplar when the call is recorded in a trace.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from sumflow.observability.metrics import AdderMetrics
from sumflow.observability.tracing import kafka_headers


def observe(histogram: Any, seconds: float, span: trace.Span) -> None:
    """Observe `seconds`, with the span's trace id as exemplar when the span is recorded."""
    ctx = span.get_span_context()
    if span.is_recording() and ctx.is_valid:
        histogram.observe(seconds, exemplar={"trace_id": format(ctx.trace_id, "032x")})
    else:
        histogram.observe(seconds)


def set_error(span: trace.Span, message: str) -> None:
    if span.is_recording():
        span.set_status(trace.Status(trace.StatusCode.ERROR, message))


class PublishTelemetry:
    """The use case's side: the PRODUCER span `<topic> publish`, its Kafka headers, de-dupe and produce metrics."""

    def __init__(self, metrics: AdderMetrics | None, tracer: trace.Tracer | None, topic: str) -> None:
        self._metrics = metrics
        self._tracer = tracer
        self._topic = topic

    def publish_span(self, request_id: str) -> AbstractContextManager[trace.Span]:
        if self._tracer is None:
            return nullcontext(trace.INVALID_SPAN)
        return self._tracer.start_as_current_span(
            f"{self._topic} publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "publish",
                "messaging.operation.name": "send",
                "messaging.destination.name": self._topic,
                "messaging.kafka.message.key": request_id,
                "request_id": request_id,
            },
        )

    def record_headers(self) -> list[tuple[str, bytes]]:
        """The current span's `traceparent` as Kafka record headers (none when tracing is off)."""
        return kafka_headers() if self._tracer is not None else []

    def dedupe(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.dedupe.labels(outcome).inc()

    def produce_failed(self, span: trace.Span, reason: str, message: str) -> None:
        span.set_status(trace.Status(trace.StatusCode.ERROR, message))
        if self._metrics is not None:
            self._metrics.produce_errors.labels(reason).inc()

    def produce_unacked(self, span: trace.Span) -> None:
        span.set_status(trace.Status(trace.StatusCode.ERROR, "no acknowledgement before the deadline"))

    def produce_acked(self, span: trace.Span, seconds: float) -> None:
        if self._metrics is not None:
            observe(self._metrics.produce_duration, seconds, span)


class CallTelemetry:
    """The servicer's side: the SERVER span of a gRPC method, in-flight gauge, calls by code, latency."""

    def __init__(
        self,
        metrics: AdderMetrics | None,
        tracer: trace.Tracer | None,
        *,
        service: str,
        method: str,
        codes: Iterable[str],
        extract_trace_context: bool,
    ) -> None:
        """`codes`: every status code name, so each `requests` series exists (at 0) from the start."""
        self._metrics = metrics
        self._tracer = tracer
        self._service = service
        self._method = method
        self._full_method = f"{service}/{method}"
        self._extract = extract_trace_context
        self._counters: dict[str, Any] = {}
        if metrics is not None:
            self._duration = metrics.request_duration.labels(self._full_method)
            self._counters = {code: metrics.requests.labels(self._full_method, code) for code in codes}

    def begin(self, metadata: Iterable[tuple[str, Any]]) -> Context | None:
        """Count the call in flight; the incoming trace context (None unless extraction is on)."""
        if self._metrics is not None:
            self._metrics.in_flight.inc()
        return propagate.extract(dict(metadata)) if self._extract else None

    def server_span(self, parent: Context | None) -> AbstractContextManager[trace.Span]:
        if self._tracer is None:
            return nullcontext(trace.INVALID_SPAN)
        return self._tracer.start_as_current_span(
            self._full_method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": self._service, "rpc.method": self._method},
        )

    def finish(self, span: trace.Span, request_id: str, code_name: str, code_value: int, seconds: float) -> bool:
        """Span attributes and metrics of a finished call; True if the call is recorded in a trace."""
        recording = span.is_recording()
        if recording:
            span.set_attributes({"request_id": request_id, "rpc.grpc.status_code": code_value})
        if self._metrics is not None:
            self._metrics.in_flight.dec()
            self._counters[code_name].inc()
            observe(self._duration, seconds, span)
        return recording
