"""Wires the adder: config -> de-dupe store, Kafka publisher, use case, gRPC server, metrics, tracing.

`build_adder` opens everything (the Kafka bootstrap is retried a bounded number of times) but serves
nothing; `AdderApp.start()` starts the gRPC server and turns health SERVING; `AdderApp.stop()` drains.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from sumflow.adapters.dedupe_store import DedupeStore
from sumflow.adapters.event_publisher import EventPublisher, ProducerSettings
from sumflow.config import AdderConfig, split_listen
from sumflow.entrypoints import http_server
from sumflow.entrypoints.adder_grpc_server import AdderGrpcServer
from sumflow.entrypoints.adder_servicer import SumServicer
from sumflow.observability.metrics import AdderMetrics, new_registry
from sumflow.observability.tracing import setup_tracing, shutdown_tracing
from sumflow.service_layer.add_numbers import AddNumbersHandler

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("sumflow.adder")


@dataclass(slots=True)
class AdderApp:
    cfg: AdderConfig
    store: DedupeStore
    publisher: EventPublisher
    grpc: AdderGrpcServer
    handler: AddNumbersHandler
    registry: CollectorRegistry
    metrics_server: Any = None
    metrics_port: int | None = None
    _stopped: bool = field(default=False)

    @property
    def grpc_port(self) -> int:
        return self.grpc.port

    def start(self) -> None:
        self.grpc.start()
        self.grpc.set_serving(True)
        log.info(
            "adder serving",
            extra={
                "grpc_port": self.grpc.port,
                "metrics_port": self.metrics_port,
                "pid": os.getpid(),
                "topic": self.cfg.common.topic,
            },
        )

    def stop(self, grace_seconds: float | None = None) -> None:
        """Health NOT_SERVING, finish in-flight calls, flush the producer, close the store."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.cfg.publish_timeout_seconds + 1.0 if grace_seconds is None else grace_seconds
        self.grpc.set_serving(False)
        self.grpc.stop(grace)
        self.publisher.close(timeout_seconds=min(grace, 10.0))
        self.store.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        shutdown_tracing()
        log.info("adder stopped", extra={"pid": os.getpid()})


def build_adder(
    cfg: AdderConfig,
    *,
    registry: CollectorRegistry | None = None,
    serve_metrics: bool = True,
    span_exporter: SpanExporter | None = None,
    bootstrap_attempts: int = 30,
) -> AdderApp:
    tracer = setup_tracing(
        "adder", cfg.common.otlp_endpoint, instance=cfg.common.service_instance, exporter=span_exporter
    )
    tracing_on = span_exporter is not None or bool(cfg.common.otlp_endpoint)
    if registry is None:
        registry = new_registry(process_metrics=serve_metrics)
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
    )
    servicer = SumServicer(
        handler,
        metrics=metrics,
        tracer=tracer if tracing_on else None,
        extract_trace_context=tracing_on,
        log_every_call=cfg.access_log == "all",
    )
    try:
        grpc_server = AdderGrpcServer(
            servicer, listen=cfg.grpc_listen, workers=cfg.grpc_workers, reuse_port=cfg.processes > 1
        )
        metrics_server = None
        metrics_port = None
        if serve_metrics:
            host, port = split_listen(cfg.metrics_listen)
            metrics_server = http_server.serve_metrics(registry, host, port, ident="sumflow-adder")
            metrics_port = metrics_server.port
    except BaseException:
        publisher.close(timeout_seconds=1.0)
        store.close()
        raise
    return AdderApp(cfg, store, publisher, grpc_server, handler, registry, metrics_server, metrics_port)
