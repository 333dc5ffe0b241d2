"""Wire the accumulator: state (SQLite + audit + total.json), Kafka source, DLQ, metrics, tracing.

`build` returns the service objects (the ledger consumer, its status, the store, the metrics) for
an entrypoint to serve; `open_state` refuses a state it cannot trust (StateCorrupt, naming the
file and the recovery command). `rebuild_state` wires and runs the recovery command's rebuild.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import asdict, dataclass
from typing import IO

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from sumflow.adapters.audit_log import AuditInconsistent, AuditLog
from sumflow.adapters.dlq_publisher import KafkaDlqPublisher
from sumflow.adapters.event_source import KafkaEventSource
from sumflow.adapters.kafka_security import kafka_client_security
from sumflow.adapters.ledger_store import LedgerStore, StateCorrupt, StoredState, state_db_path
from sumflow.adapters.state_dir import audit_dir, lock_state_dir, move_state_db_aside
from sumflow.adapters.topic_reader import KafkaTopicReader
from sumflow.adapters.total_file import total_file_path, write_total_file
from sumflow.config import AccumulatorConfig
from sumflow.observability.accumulator_telemetry import AccumulatorTelemetry
from sumflow.observability.metrics import AccumulatorMetrics, new_registry
from sumflow.service_layer.accumulator_status import AccumulatorStatus
from sumflow.service_layer.ledger_consumer import LedgerConsumer
from sumflow.service_layer.rebuild import RebuildProgress, RebuildReport, StateRebuild, rebuild

log = logging.getLogger(__name__)

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
class AccumulatorService:
    """The accumulator's service objects, state loaded, nothing running yet."""

    config: AccumulatorConfig
    registry: CollectorRegistry
    metrics: AccumulatorMetrics
    status: AccumulatorStatus
    consumer: LedgerConsumer
    store: LedgerStore
    lock: IO[bytes]  # the state directory's lock: held until closed


def build(
    config: AccumulatorConfig,
    *,
    registry: CollectorRegistry | None = None,
    tracer: trace.Tracer | None = None,
) -> AccumulatorService:
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
    security = kafka_client_security(**asdict(common.kafka_security))

    def source_factory() -> KafkaEventSource:
        return KafkaEventSource(
            common.kafka_bootstrap,
            common.topic,
            config.consumer_group,
            max_poll_records=config.max_poll_records,
            client_id=f"sumflow-accumulator-{common.service_instance}",
            client_security=security,
        )

    consumer = LedgerConsumer(
        store=store,
        audit=audit,
        source_factory=source_factory,
        dlq=KafkaDlqPublisher(common.kafka_bootstrap, config.dlq_topic, common.topic, client_security=security)
        if config.dlq_writer
        else None,
        status=status,
        telemetry=AccumulatorTelemetry(metrics, tracer),
        write_total=functools.partial(write_total_file, config.state_dir),
        state=stored.ledger,
        audit_position=stored.audit,
    )
    status.state_loaded = True
    metrics.total.set(stored.ledger.total)
    metrics.applied.set(stored.ledger.applied)
    log.info(
        "state loaded",
        extra={
            "state_dir": str(config.state_dir),
            "total": str(stored.ledger.total),
            "applied": stored.ledger.applied,
            "consumer_group": config.consumer_group,
            "dlq_writer": config.dlq_writer,
            "pid": os.getpid(),
        },
    )
    return AccumulatorService(config, registry, metrics, status, consumer, store, lock)


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
            topic=functools.partial(
                KafkaTopicReader,
                common.kafka_bootstrap,
                common.topic,
                client_security=kafka_client_security(**asdict(common.kafka_security)),
            )
            if use_kafka
            else None,
            new_store=functools.partial(new_store, config),
            move_aside=functools.partial(move_state_db_aside, state_dir),
            write_total=functools.partial(write_total_file, state_dir),
            window_max_ids=config.applied_window_max_ids,
        )
        return rebuild(parts, timeout=timeout, progress=progress)
    finally:
        lock.close()
