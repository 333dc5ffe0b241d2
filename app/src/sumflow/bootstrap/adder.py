"""Wires the adder's service objects: config -> tracing, metrics, de-dupe store, Kafka publisher, use case.

`build_adder_services` opens the store and connects the producer (the Kafka bootstrap is retried a
bounded number of times) and serves nothing: entrypoints/adder_app.py puts the gRPC server and the
metrics endpoint in front of these objects. `AdderServices.close()` flushes and closes them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from sumflow.adapters.dedupe_store import DedupeStore
from sumflow.adapters.event_publisher import EventPublisher, ProducerSettings
from sumflow.adapters.kafka_security import kafka_client_security
from sumflow.config import AdderConfig
from sumflow.observability.metrics import AdderMetrics, new_registry
from sumflow.observability.tracing import setup_tracing, shutdown_tracing
from sumflow.service_layer.add_numbers import AddNumbersHandler

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter


@dataclass(slots=True)
class AdderServices:
    cfg: AdderConfig
    store: DedupeStore
    publisher: EventPublisher
    handler: AddNumbersHandler
    registry: CollectorRegistry
    metrics: AdderMetrics
    tracer: trace.Tracer | None  # None: tracing off (no spans, no trace headers, no context extraction)

    def close(self, timeout_seconds: float) -> None:
        """Flush and close the producer, close the store, flush spans."""
        try:
            self.publisher.close(timeout_seconds=timeout_seconds)
        finally:
            self.store.close()
            shutdown_tracing()


def build_adder_services(
    cfg: AdderConfig,
    *,
    registry: CollectorRegistry | None = None,
    process_metrics: bool = True,
    span_exporter: SpanExporter | None = None,
    bootstrap_attempts: int = 30,
) -> AdderServices:
    """Raises BrokerUnreachable when Kafka cannot be reached within `bootstrap_attempts`."""
    tracer = setup_tracing(
        "adder", cfg.common.otlp_endpoint, instance=cfg.common.service_instance, exporter=span_exporter
    )
    tracing_on = span_exporter is not None or bool(cfg.common.otlp_endpoint)
    if registry is None:
        registry = new_registry(process_metrics=process_metrics)
    metrics = AdderMetrics(registry)
    store = DedupeStore(
        cfg.dedupe_dir,
        ttl_seconds=cfg.dedupe_ttl_seconds,
        size_limit_bytes=cfg.dedupe_size_limit_bytes,
        shared_between_processes=cfg.processes > 1,
    )
    try:
        publisher = EventPublisher.connect(
            ProducerSettings(
                bootstrap=cfg.common.kafka_bootstrap,
                topic=cfg.common.topic,
                delivery_timeout_seconds=cfg.publish_timeout_seconds,
                retries=cfg.producer_retries,
                linger_ms=cfg.producer_linger_ms,
                max_in_flight=cfg.producer_max_in_flight,
                client_id=f"sumflow-adder-{cfg.common.service_instance}-{os.getpid()}",
                client_security=kafka_client_security(**asdict(cfg.common.kafka_security)),
            ),
            attempts=bootstrap_attempts,
        )
    except BaseException:
        store.close()
        raise
    handler = AddNumbersHandler(
        store,
        publisher,
        topic=cfg.common.topic,
        publish_timeout_seconds=cfg.publish_timeout_seconds,
        pending_timeout_seconds=cfg.pending_timeout_seconds,
        metrics=metrics,
        tracer=tracer if tracing_on else None,
        publish_batch_max=cfg.publish_batch_max,
    )
    return AdderServices(cfg, store, publisher, handler, registry, metrics, tracer if tracing_on else None)
