"""Wire the accumulator: state (SQLite + audit + total.json), Kafka source, DLQ, HTTP, metrics, tracing.

`open_state` refuses a state it cannot trust (StateCorrupt, naming the file and the recovery
command). `Accumulator.start` serves HTTP at once (readiness 503 until the consumer thread has
assigned the partitions) and runs the consumer loop in its own thread.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import IO, Any

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from sumflow.adapters.audit_log import AuditInconsistent, AuditLog
from sumflow.adapters.dlq_publisher import KafkaDlqPublisher
from sumflow.adapters.event_source import KafkaEventSource
from sumflow.adapters.ledger_store import LedgerStore, StateCorrupt, StoredState, state_db_path
from sumflow.adapters.state_dir import audit_dir, lock_state_dir, move_state_db_aside
from sumflow.adapters.topic_reader import KafkaTopicReader
from sumflow.adapters.total_file import total_file_path, write_total_file
from sumflow.config import AccumulatorConfig, split_listen
from sumflow.entrypoints.accumulator_app import create_app, instrument
from sumflow.entrypoints.http_server import create_http_server
from sumflow.observability.accumulator_telemetry import AccumulatorTelemetry
from sumflow.observability.metrics import AccumulatorMetrics, new_registry
from sumflow.service_layer.accumulator_status import AccumulatorStatus
from sumflow.service_layer.ledger_consumer import LedgerConsumer
from sumflow.service_layer.rebuild import RebuildProgress, RebuildReport, StateRebuild, rebuild

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 10_000
STOP_TIMEOUT_SECONDS = 20.0  # below the unit's TimeoutStopSec (30 s): SIGTERM always ends the process
RECOVERY_HINT = (
    "run `sumflow-accumulator rebuild` with the same environment to rebuild it from the audit log and the Kafka topic"
)


def new_audit_log(config: AccumulatorConfig) -> AuditLog:
    return AuditLog(audit_dir(config.state_dir), config.audit_max_bytes, config.audit_keep_files)


def new_store(config: AccumulatorConfig) -> LedgerStore:
    return LedgerStore(
        config.state_dir,
        window_seconds=config.applied_window_seconds,
        window_max_ids=config.applied_window_max_ids,
    )


def open_state(config: AccumulatorConfig) -> tuple[LedgerStore, AuditLog, StoredState]:
    """Load the committed state and make the audit match it, or raise StateCorrupt (never reset)."""
    state_dir = config.state_dir
    audit = new_audit_log(config)
    db = state_db_path(state_dir)
    fresh = not db.exists()
    if fresh:
        leftovers = [str(p) for p in (total_file_path(state_dir),) if p.exists()]
        if audit.has_segments():
            leftovers.append(str(audit.directory))
        if leftovers:
            raise StateCorrupt(f"{db}: state database is missing but {', '.join(leftovers)} exist; {RECOVERY_HINT}")
    store = new_store(config)
    try:
        stored = store.open(create=fresh)
        audit.recover(stored.audit)
    except StateCorrupt as exc:
        store.close()
        raise StateCorrupt(f"{exc}; {RECOVERY_HINT}") from None
    except AuditInconsistent as exc:
        store.close()
        raise StateCorrupt(f"{exc}; {RECOVERY_HINT}") from None
    if fresh:
        write_total_file(state_dir, stored.ledger, stored.updated_at)
    return store, audit, stored


@dataclass
class Accumulator:
    config: AccumulatorConfig
    registry: CollectorRegistry
    metrics: AccumulatorMetrics
    status: AccumulatorStatus
    consumer: LedgerConsumer
    http: Any  # waitress server
    lock: IO[bytes]
    stop_event: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def http_port(self) -> int:
        return int(self.http.effective_port)

    def start(self) -> None:
        http_thread = threading.Thread(target=self.http.run, name="http", daemon=True)
        consumer_thread = threading.Thread(
            target=self.consumer.run, args=(self.stop_event,), name="consumer", daemon=True
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
        self.lock.close()

    def consumer_alive(self) -> bool:
        return len(self._threads) == 2 and self._threads[1].is_alive()


def build(
    config: AccumulatorConfig,
    *,
    registry: CollectorRegistry | None = None,
    tracer: trace.Tracer | None = None,
) -> Accumulator:
    lock = lock_state_dir(config.state_dir)
    try:
        store, audit, stored = open_state(config)
    except BaseException:
        lock.close()
        raise
    registry = registry if registry is not None else new_registry()
    metrics = AccumulatorMetrics(registry)
    status = AccumulatorStatus(stall_seconds=config.stall_seconds)
    common = config.common

    def source_factory() -> KafkaEventSource:
        return KafkaEventSource(
            common.kafka_bootstrap,
            common.topic,
            config.consumer_group,
            max_poll_records=config.max_poll_records,
            client_id=f"sumflow-accumulator-{common.service_instance}",
        )

    consumer = LedgerConsumer(
        store=store,
        audit=audit,
        source_factory=source_factory,
        dlq=KafkaDlqPublisher(common.kafka_bootstrap, config.dlq_topic, common.topic),
        status=status,
        telemetry=AccumulatorTelemetry(metrics, tracer),
        write_total=functools.partial(write_total_file, config.state_dir),
        state=stored.ledger,
        audit_position=stored.audit,
    )
    status.state_loaded = True
    metrics.total.set(stored.ledger.total)
    metrics.applied.set(stored.ledger.applied)
    app = create_app(status, store.recent, registry)
    host, port = split_listen(config.http_listen)
    http = create_http_server(
        instrument(app, metrics), host, port, threads=config.http_threads, ident="sumflow-accumulator"
    )
    log.info(
        "state loaded",
        extra={
            "state_dir": str(config.state_dir),
            "total": str(stored.ledger.total),
            "applied": stored.ledger.applied,
            "pid": os.getpid(),
        },
    )
    # Catch-up allocates a few objects per event: a higher young-generation threshold makes the
    # cyclic collector run far less often (measured: ~10% of catch-up CPU), and the objects of the
    # start-up are frozen out of the full collections.
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    gc.freeze()
    return Accumulator(config, registry, metrics, status, consumer, http, lock)


def rebuild_state(
    config: AccumulatorConfig,
    *,
    use_kafka: bool = True,
    timeout: float = 600.0,
    progress: RebuildProgress | None = None,
) -> RebuildReport:
    """Rebuild state.db from the audit log (and the topic unless `use_kafka` is false), the state directory locked."""
    state_dir = config.state_dir
    lock = lock_state_dir(state_dir)
    try:
        audit = new_audit_log(config)
        audit.directory.mkdir(parents=True, exist_ok=True)
        common = config.common
        parts = StateRebuild(
            audit=audit,
            topic=functools.partial(KafkaTopicReader, common.kafka_bootstrap, common.topic) if use_kafka else None,
            new_store=functools.partial(new_store, config),
            move_aside=functools.partial(move_state_db_aside, state_dir),
            write_total=functools.partial(write_total_file, state_dir),
            window_max_ids=config.applied_window_max_ids,
        )
        return rebuild(parts, timeout=timeout, progress=progress)
    finally:
        lock.close()
