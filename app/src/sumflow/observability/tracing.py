"""OpenTelemetry tracing: one trace per request from the gRPC call through Kafka to the state file.

- `setup_tracing` installs an SDK tracer provider exporting OTLP/gRPC to SUMFLOW_OTLP_ENDPOINT, or
  leaves the no-op provider when no endpoint is set (tracing then costs next to nothing).
- The W3C `traceparent` travels in the Kafka record headers (`kafka_headers` / `context_from_headers`).
Tests pass their own SpanExporter (e.g. the SDK's InMemorySpanExporter) to `setup_tracing`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry import propagate, trace
from opentelemetry.context import Context

import sumflow

if TYPE_CHECKING:  # the SDK is imported only when tracing is on: it costs ~0.3 s of start time
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

_provider: TracerProvider | None = None


def setup_tracing(
    service: str,
    endpoint: str | None,
    *,
    instance: str = "",
    exporter: SpanExporter | None = None,
) -> trace.Tracer:
    """Return the service's tracer; export to `endpoint` (OTLP/gRPC) or to `exporter` if given."""
    global _provider
    if exporter is None and not endpoint:
        return trace.get_tracer(f"sumflow.{service}")
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": f"sumflow-{service}",
                "service.version": sumflow.__version__,
                "service.instance.id": instance,
            }
        )
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    _provider = provider
    return provider.get_tracer(f"sumflow.{service}")


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.shutdown()


def kafka_headers(context: Context | None = None) -> list[tuple[str, bytes]]:
    """W3C trace context of the current (or given) span as Kafka record headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return [(key, value.encode()) for key, value in carrier.items()]


def context_from_headers(headers: Iterable[tuple[str, bytes]] | None) -> Context:
    carrier = {key: value.decode("latin-1") for key, value in (headers or ()) if isinstance(value, bytes)}
    return propagate.extract(carrier)
