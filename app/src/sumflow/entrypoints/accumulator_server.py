"""The running accumulator: the HTTP API (waitress) and the ledger consumer, each in its own thread.

`build` takes the service objects from bootstrap.accumulator and puts the HTTP server in front of
them. `Accumulator.start` serves HTTP at once (readiness 503 until the consumer thread has assigned
the partitions) and runs the consumer loop in its own thread.
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from sumflow.bootstrap.accumulator import AccumulatorService
from sumflow.bootstrap.accumulator import build as build_service
from sumflow.config import AccumulatorConfig, split_listen
from sumflow.entrypoints.accumulator_app import create_app, instrument
from sumflow.entrypoints.http_server import create_http_server
from sumflow.observability.metrics import AccumulatorMetrics
from sumflow.service_layer.accumulator_status import AccumulatorStatus

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 10_000
STOP_TIMEOUT_SECONDS = 20.0  # below the unit's TimeoutStopSec (30 s): SIGTERM always ends the process


@dataclass
class Accumulator:
    service: AccumulatorService
    http: Any  # waitress server
    stop_event: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def status(self) -> AccumulatorStatus:
        return self.service.status

    @property
    def metrics(self) -> AccumulatorMetrics:
        return self.service.metrics

    @property
    def http_port(self) -> int:
        return int(self.http.effective_port)

    def start(self) -> None:
        http_thread = threading.Thread(target=self.http.run, name="http", daemon=True)
        consumer_thread = threading.Thread(
            target=self.service.consumer.run, args=(self.stop_event,), name="consumer", daemon=True
        )
        self._threads = [http_thread, consumer_thread]
        http_thread.start()
        consumer_thread.start()
        log.info(
            "accumulator started",
            extra={"http_listen": f"{self.http.effective_host}:{self.http_port}", "http_port": self.http_port},
        )

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop polling, let the batch in progress commit, close Kafka and the state; stop HTTP.

        Bounded: a consumer thread that does not finish within `timeout` (stuck in a library) is a
        daemon thread and is abandoned; what it had not committed is consumed again after a restart.
        """
        self.stop_event.set()
        if len(self._threads) == 2:
            self._threads[1].join(timeout)
            if self._threads[1].is_alive():
                log.error("consumer thread did not stop in time; exiting without it", extra={"timeout": timeout})
        self.http.close()
        if self._threads:
            self._threads[0].join(5)
        self.service.lock.close()

    def consumer_alive(self) -> bool:
        return len(self._threads) == 2 and self._threads[1].is_alive()


def serve(service: AccumulatorService) -> Accumulator:
    """The HTTP server in front of the service objects (not started)."""
    config = service.config
    app = create_app(service.status, service.store.recent, service.registry)
    host, port = split_listen(config.http_listen)
    http = create_http_server(
        instrument(app, service.metrics), host, port, threads=config.http_threads, ident="sumflow-accumulator"
    )
    # Catch-up allocates a few objects per event: a higher young-generation threshold makes the
    # cyclic collector run far less often (measured: ~10% of catch-up CPU), and the objects of the
    # start-up are frozen out of the full collections.
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    gc.freeze()
    return Accumulator(service, http)


def build(
    config: AccumulatorConfig,
    *,
    registry: CollectorRegistry | None = None,
    tracer: trace.Tracer | None = None,
) -> Accumulator:
    service = build_service(config, registry=registry, tracer=tracer)
    try:
        return serve(service)
    except BaseException:
        service.store.close()
        service.lock.close()
        raise
