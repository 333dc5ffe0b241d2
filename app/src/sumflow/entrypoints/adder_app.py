"""The running adder: the bootstrap's service objects behind the gRPC server and the metrics endpoint.

`build_adder` builds the services (bootstrap/adder.py), then binds the gRPC server (health
NOT_SERVING) and the metrics endpoint, and serves nothing yet; `AdderApp.start()` starts the gRPC
server and turns health SERVING; `AdderApp.drain()` turns health NOT_SERVING for good and keeps
serving for a while (a load balancer's health check notices); `AdderApp.stop()` refuses new calls and
lets in-flight ones finish.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from sumflow.bootstrap.adder import AdderServices, build_adder_services
from sumflow.config import AdderConfig, split_listen
from sumflow.entrypoints import http_server
from sumflow.entrypoints.adder_grpc_server import AdderGrpcServer
from sumflow.entrypoints.adder_servicer import SumServicer
from sumflow.entrypoints.tls import grpc_server_credentials

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("sumflow.adder")


@dataclass(slots=True)
class AdderApp:
    services: AdderServices
    grpc: AdderGrpcServer
    metrics_server: http_server.BackgroundHttpServer | None = None
    _stopped: bool = field(default=False)

    @property
    def grpc_port(self) -> int:
        return self.grpc.port

    @property
    def metrics_port(self) -> int | None:
        return None if self.metrics_server is None else self.metrics_server.port

    def start(self) -> None:
        self.grpc.start()
        self.grpc.set_serving(True)
        log.info(
            "adder serving",
            extra={
                "grpc_port": self.grpc.port,
                "metrics_port": self.metrics_port,
                "pid": os.getpid(),
                "topic": self.services.cfg.common.topic,
            },
        )

    def drain(self, seconds: float) -> None:
        """Health NOT_SERVING (service "" and SumService), then keep serving every call for `seconds`."""
        if self._stopped:
            return
        self.grpc.enter_drain()
        log.info("adder draining", extra={"drain_seconds": seconds, "pid": os.getpid()})
        time.sleep(seconds)

    def stop(self, grace_seconds: float | None = None) -> None:
        """Health NOT_SERVING, finish in-flight calls, flush the producer, close the store."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.services.cfg.publish_timeout_seconds + 1.0 if grace_seconds is None else grace_seconds
        self.grpc.set_serving(False)
        self.grpc.stop(grace)
        self.services.close(timeout_seconds=min(grace, 10.0))
        if self.metrics_server is not None:
            self.metrics_server.close()
        log.info("adder stopped", extra={"pid": os.getpid()})


def build_adder(
    cfg: AdderConfig,
    *,
    registry: CollectorRegistry | None = None,
    serve_metrics: bool = True,
    span_exporter: SpanExporter | None = None,
    bootstrap_attempts: int = 30,
) -> AdderApp:
    """Raises BrokerUnreachable (Kafka) or OSError (a port in use); closes what it opened first."""
    services = build_adder_services(
        cfg,
        registry=registry,
        process_metrics=serve_metrics,
        span_exporter=span_exporter,
        bootstrap_attempts=bootstrap_attempts,
    )
    tracing_on = services.tracer is not None
    servicer = SumServicer(
        services.handler,
        metrics=services.metrics,
        tracer=services.tracer,
        extract_trace_context=tracing_on,
        log_every_call=cfg.access_log == "all",
    )
    try:
        grpc_server = AdderGrpcServer(
            servicer,
            listen=cfg.grpc_listen,
            workers=cfg.grpc_workers,
            reuse_port=cfg.processes > 1,
            credentials=grpc_server_credentials(cfg.grpc_tls),
        )
        metrics_server = None
        if serve_metrics:
            host, port = split_listen(cfg.metrics_listen)
            metrics_server = http_server.serve_metrics(services.registry, host, port, ident="sumflow-adder")
    except BaseException:
        services.close(timeout_seconds=1.0)
        raise
    return AdderApp(services, grpc_server, metrics_server)
