"""Every Prometheus metric sumflow exports. Names here are a contract: dashboards, alert rules and
tests refer to them, so rename only together with those.

Each service builds its metrics on a registry passed in (a fresh one per test). Latency histograms
take exemplars ({"trace_id": ...}), exposed when Prometheus asks for OpenMetrics.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    gc_collector,
    platform_collector,
    process_collector,
)

import sumflow

# Buckets tuned for a service whose calls take ~1-20 ms and a pipeline of ~5-100 ms.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
E2E_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def new_registry(*, process_metrics: bool = True) -> CollectorRegistry:
    """A registry with process CPU/memory, GC and platform collectors, plus build info."""
    registry = CollectorRegistry(auto_describe=True)
    if process_metrics:
        process_collector.ProcessCollector(registry=registry)
        platform_collector.PlatformCollector(registry=registry)
        gc_collector.GCCollector(registry=registry)
    return registry


def _build_info(registry: CollectorRegistry, service: str) -> None:
    Info("sumflow_build", "sumflow version and service", registry=registry).info(
        {"version": sumflow.__version__, "service": service}
    )


class AdderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        _build_info(registry, "adder")
        self.requests = Counter(
            "sumflow_grpc_requests",
            "gRPC calls handled, by method and status code",
            ["method", "code"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "sumflow_grpc_request_duration_seconds",
            "Time to answer a gRPC call, by method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.dedupe = Counter(
            "sumflow_adder_dedupe_lookups",
            "De-duplication outcomes: new, duplicate (stored answer returned), conflict, takeover",
            ["outcome"],
            registry=registry,
        )
        self.produce_duration = Histogram(
            "sumflow_kafka_produce_duration_seconds",
            "Time from send to Kafka acknowledgement (acks=all) of one event",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.produce_errors = Counter(
            "sumflow_kafka_produce_errors",
            "Events Kafka did not acknowledge within the retry budget",
            ["reason"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "sumflow_grpc_in_flight_requests",
            "gRPC calls being served now",
            registry=registry,
            multiprocess_mode="livesum",
        )
        for outcome in ("new", "duplicate", "conflict", "takeover"):
            self.dedupe.labels(outcome)


class AccumulatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        _build_info(registry, "accumulator")
        self.events_applied = Counter(
            "sumflow_accumulator_events_applied",
            "Events added to the total (each exactly once)",
            registry=registry,
        )
        self.duplicates_dropped = Counter(
            "sumflow_accumulator_duplicates_dropped",
            "Events dropped because their request id was already applied within the window",
            registry=registry,
        )
        self.redeliveries = Counter(
            "sumflow_accumulator_redeliveries",
            "Records skipped because their offset was already committed to the state",
            registry=registry,
        )
        self.dlq_events = Counter(
            "sumflow_accumulator_dlq_events",
            "Invalid events sent to the dead-letter topic, by reason",
            ["reason"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "sumflow_accumulator_consumer_lag",
            "Records on the topic not yet applied, per partition",
            ["partition"],
            registry=registry,
        )
        self.end_to_end_latency = Histogram(
            "sumflow_accumulator_end_to_end_latency_seconds",
            "From the adder's produce timestamp to the event being committed to the state",
            buckets=E2E_BUCKETS,
            registry=registry,
        )
        self.batch_duration = Histogram(
            "sumflow_accumulator_batch_commit_duration_seconds",
            "Time to commit one polled batch to the state (transaction + fsync + total file)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "sumflow_accumulator_batch_size",
            "Records per polled batch",
            buckets=(1, 2, 5, 10, 50, 100, 500, 1000, 5000, 20000),
            registry=registry,
        )
        self.total = Gauge("sumflow_accumulator_total", "The running total", registry=registry)
        self.applied = Gauge(
            "sumflow_accumulator_applied", "Events applied since the state was created", registry=registry
        )
        self.ready = Gauge(
            "sumflow_accumulator_ready", "1 when the state is loaded and partitions assigned", registry=registry
        )
        self.state_errors = Counter(
            "sumflow_accumulator_state_errors",
            "Failures to commit the state (disk full, I/O error); consumption pauses until it succeeds",
            registry=registry,
        )
        self.http_requests = Counter(
            "sumflow_http_requests",
            "HTTP requests served, by method, route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "sumflow_http_request_duration_seconds",
            "Time to serve an HTTP request, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
