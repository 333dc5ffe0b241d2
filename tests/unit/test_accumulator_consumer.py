"""The consumer loop's batch commit with real SQLite/audit/total.json files.

Kafka is replaced here by an in-memory partitioned log that honours seek/poll like a consumer
(the broker itself is exercised by tests/integration/test_accumulator_*.py).
"""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from sumflow.adapters.audit_log import read_audit
from sumflow.adapters.state_dir import audit_dir
from sumflow.adapters.total_file import read_total_file, write_total_file
from sumflow.bootstrap.accumulator import open_state
from sumflow.config import load_accumulator_config
from sumflow.domain.ledger import Record
from sumflow.observability.accumulator_telemetry import AccumulatorTelemetry
from sumflow.observability.metrics import AccumulatorMetrics
from sumflow.service_layer.accumulator_status import AccumulatorStatus
from sumflow.service_layer.ledger_consumer import LedgerConsumer
from tests.fixtures.event_records import event_value


class MemoryLog:
    """Partitioned records with a read position per partition: seek and poll like a consumer."""

    topic = "summation"

    def __init__(self, partitions: int = 2, max_records: int = 100) -> None:
        self.data: dict[int, list[Record]] = {p: [] for p in range(partitions)}
        self.position: dict[int, int] = {}
        self.max_records = max_records

    @property
    def partitions(self) -> list[int]:
        return sorted(self.position)

    def append(self, partition: int, value: bytes | None, key: bytes | None = None, headers=()) -> None:
        records = self.data[partition]
        records.append(Record(partition, len(records), key, value, tuple(headers)))

    def refresh_assignment(self, next_offsets, *, force=False):
        new = [p for p in self.data if p not in self.position]
        for p in new:
            self.position[p] = 0
        if new:
            self.seek(next_offsets)
        return new

    def seek(self, next_offsets):
        for p in self.position:
            self.position[p] = next_offsets.get(p, 0)

    def poll(self, timeout_ms):
        out = []
        for p in sorted(self.position):
            chunk = self.data[p][self.position[p] : self.position[p] + self.max_records - len(out)]
            out.extend(chunk)
            self.position[p] += len(chunk)
        if not out:
            time.sleep(timeout_ms / 1000)
        return out

    def lag(self):
        return {p: len(self.data[p]) - self.position[p] for p in self.position}

    def commit_group_offsets(self, next_offsets, *, wait=False):
        pass

    def close(self):
        pass


class MemoryDlq:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int, str]] = []
        self.fail = False

    def publish(self, rejected):
        if self.fail:
            raise RuntimeError("DLQ broker unreachable")
        self.sent.extend((r.record.partition, r.record.offset, r.reason) for r in rejected)

    def close(self):
        pass


# Fixed production time: these tests never depend on the wall clock.
event = functools.partial(event_value, produced_at_ms=1_700_000_000_000)


def make_consumer(state_dir: Path, source, dlq, *, env: dict[str, str] | None = None):
    config = load_accumulator_config({"SUMFLOW_STATE_DIR": str(state_dir), **(env or {})})
    store, audit, stored = open_state(config)
    registry = CollectorRegistry()
    metrics = AccumulatorMetrics(registry)
    status = AccumulatorStatus()
    status.state_loaded = True
    consumer = LedgerConsumer(
        store=store,
        audit=audit,
        source_factory=lambda: source,
        dlq=dlq,
        status=status,
        telemetry=AccumulatorTelemetry(metrics),
        write_total=functools.partial(write_total_file, state_dir),
        state=stored.ledger,
        audit_position=stored.audit,
        poll_timeout_ms=10,
    )
    return consumer, registry, status


def metric(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    value = registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


def test_batch_applies_each_id_once_and_routes_invalid_records_to_the_dlq(tmp_path):
    log, dlq = MemoryLog(), MemoryDlq()
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    log.append(0, event(a, 1, 2))
    log.append(1, event(b, 10, 20))
    log.append(0, event(a, 1, 2))  # same id again (adder crashed after the ack): dropped
    log.append(1, b"{not json")
    log.append(1, orjson.dumps({"v": 1, "request_id": c, "first_number": 1}))
    log.append(0, event(c.upper(), -5, 2))  # ids are canonicalised
    consumer, registry, status = make_consumer(tmp_path, log, dlq)
    consumer.step()
    assert consumer.state.total == 3 + 30 - 3
    assert consumer.state.applied == 3
    assert consumer.state.next_offsets == {0: 3, 1: 3}
    assert status.readiness() == (True, "ready")
    assert status.snapshot.total_json == b'{"total":30,"applied":3}'
    assert sorted(dlq.sent) == [(1, 1, "value is not valid JSON"), (1, 2, "missing field second_number")]
    assert metric(registry, "sumflow_accumulator_events_applied_total") == 3
    assert metric(registry, "sumflow_accumulator_duplicates_dropped_total") == 1
    assert metric(registry, "sumflow_accumulator_dlq_events_total", {"reason": "invalid_json"}) == 1
    assert metric(registry, "sumflow_accumulator_dlq_events_total", {"reason": "missing_field"}) == 1
    assert read_total_file(tmp_path)["total"] == 30
    assert sorted(doc["request_id"] for doc in read_audit(audit_dir(tmp_path))) == sorted([a, b, c])

    # a later batch repeating an applied id and a redelivery after a rewind change nothing
    log.append(1, event(b, 10, 20))
    log.seek({0: 0, 1: 0})
    consumer.step()
    assert (consumer.state.total, consumer.state.applied) == (30, 3)
    assert consumer.state.next_offsets == {0: 3, 1: 4}
    assert metric(registry, "sumflow_accumulator_redeliveries_total") == 6
    assert metric(registry, "sumflow_accumulator_duplicates_dropped_total") == 2
    consumer.store.close()


def test_restart_resumes_from_the_stored_offsets(tmp_path):
    log, dlq = MemoryLog(), MemoryDlq()
    for i in range(50):
        log.append(i % 2, event(str(uuid.uuid4()), i, 1))
    consumer, _, _ = make_consumer(tmp_path, log, dlq)
    consumer.step()
    consumer.store.close()
    consumer.audit.close()
    for i in range(50, 80):
        log.append(i % 2, event(str(uuid.uuid4()), i, 1))
    fresh_log = MemoryLog()
    fresh_log.data = log.data  # a new consumer: positions come only from the state
    consumer, _, _ = make_consumer(tmp_path, fresh_log, dlq)
    consumer.step()
    assert consumer.state.applied == 80
    assert consumer.state.total == sum(range(80)) + 80
    consumer.store.close()


def test_dlq_failure_commits_nothing_then_recovers(tmp_path):
    log, dlq = MemoryLog(), MemoryDlq()
    log.append(0, event(str(uuid.uuid4()), 1, 1))
    log.append(0, b"garbage")
    log.append(0, event(str(uuid.uuid4()), 2, 2))
    consumer, registry, status = make_consumer(tmp_path, log, dlq)
    dlq.fail = True
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while metric(registry, "sumflow_accumulator_state_errors_total") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        ready, reason = status.readiness()
        assert not ready and "DLQ broker unreachable" in reason
        assert status.snapshot.total_json == b'{"total":0,"applied":0}'
        dlq.fail = False
        while consumer.state.applied < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert status.readiness() == (True, "ready")
    finally:
        stop.set()
        thread.join(10)
    assert consumer.state.total == 6
    assert dlq.sent == [(0, 1, "value is not valid JSON")]


def test_a_replica_that_is_not_the_dlq_writer_skips_invalid_records_exactly_like_the_writer(tmp_path, caplog):
    records = [
        event(str(uuid.uuid4()), 1, 2),
        b"{not json",
        event(str(uuid.uuid4()), 10, 20),
        orjson.dumps({"v": 1, "request_id": str(uuid.uuid4()), "first_number": 1}),
        event(str(uuid.uuid4()), 100, 200),
    ]
    writer_log, reader_log, dlq = MemoryLog(partitions=2), MemoryLog(partitions=2), MemoryDlq()
    for i, value in enumerate(records):
        writer_log.append(i % 2, value)
        reader_log.append(i % 2, value)
    for name in ("writer", "reader"):
        (tmp_path / name).mkdir()
    writer, writer_registry, _ = make_consumer(tmp_path / "writer", writer_log, dlq)
    reader, reader_registry, reader_status = make_consumer(tmp_path / "reader", reader_log, None)
    writer.step()
    with caplog.at_level("WARNING", logger="sumflow.service_layer.ledger_consumer"):
        reader.step()
    # the same total, count, offsets and window on both; the invalid records passed on both
    assert reader.state == writer.state
    assert (reader.state.total, reader.state.applied, reader.state.next_offsets) == (333, 3, {0: 3, 1: 2})
    assert reader_status.readiness() == (True, "ready")
    assert sorted(dlq.sent) == [(1, 0, "value is not valid JSON"), (1, 1, "missing field second_number")]
    for registry in (writer_registry, reader_registry):
        assert metric(registry, "sumflow_accumulator_dlq_events_total", {"reason": "invalid_json"}) == 1
        assert metric(registry, "sumflow_accumulator_dlq_events_total", {"reason": "missing_field"}) == 1
        assert metric(registry, "sumflow_accumulator_events_applied_total") == 3
    skipped = [r for r in caplog.records if r.getMessage() == "invalid event skipped (not the DLQ writer)"]
    assert sorted((r.partition, r.offset) for r in skipped) == [(1, 0), (1, 1)]
    writer.store.close()
    reader.store.close()


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "state"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_disk_full_pauses_reports_not_ready_and_continues_without_loss(small_tmpfs):
    log, dlq = MemoryLog(max_records=200), MemoryDlq()
    expected = 0
    for i in range(3000):
        log.append(i % 2, event(str(uuid.uuid4()), i, i))
        expected += 2 * i
    consumer, registry, status = make_consumer(small_tmpfs, log, dlq)
    consumer.step()  # one good batch first
    filler = small_tmpfs / "filler"
    with open(filler, "wb") as handle:  # fill the file system
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while metric(registry, "sumflow_accumulator_state_errors_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert metric(registry, "sumflow_accumulator_state_errors_total") >= 1
        ready, reason = status.readiness()
        assert not ready and "state commit failing" in reason
        assert metric(registry, "sumflow_accumulator_ready") == 0
        stuck = consumer.state.applied
        assert stuck < 3000
        filler.unlink()  # space returns
        while consumer.state.applied < 3000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status.readiness() == (True, "ready")
    finally:
        stop.set()
        thread.join(20)
    assert consumer.state.applied == 3000
    assert consumer.state.total == expected
    audit = list(read_audit(audit_dir(small_tmpfs)))
    assert len(audit) == 3000 and len({d["request_id"] for d in audit}) == 3000


AUDIT_ENV = {"SUMFLOW_AUDIT_MAX_BYTES": "8192", "SUMFLOW_AUDIT_KEEP_FILES": "10000"}  # rotate, keep all


def _child_commits_until_killed(state_dir: Path, events: int, pipelined: bool) -> None:
    """Runs in a forked child: consume the whole log in small batches (the parent SIGKILLs it).

    pipelined: the service's run() (the ledger thread commits batch N while N+1 is polled);
    otherwise step() by step().
    """
    log = MemoryLog(partitions=2, max_records=47)
    for i in range(events):
        log.append(i % 2, event(str(uuid.UUID(int=i + 1, version=4)), i, 1))
    consumer, _, _ = make_consumer(state_dir, log, MemoryDlq(), env=AUDIT_ENV)
    if not pipelined:
        while consumer.step():
            pass
        return
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 120
    while consumer.state.applied < events and time.monotonic() < deadline:
        time.sleep(0.005)
    stop.set()
    thread.join(60)
    if consumer.state.applied != events:
        raise RuntimeError(f"applied {consumer.state.applied} of {events}")


def _run_child(state_dir: Path, events: int, kill_after: float | None, pipelined: bool) -> int:
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            _child_commits_until_killed(state_dir, events, pipelined)
        except BaseException:
            code = 1
        os._exit(code)
    if kill_after is not None:
        time.sleep(kill_after)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return status


@pytest.mark.parametrize("pipelined", [False, True], ids=["step", "pipelined"])
def test_sigkill_at_any_moment_leaves_audit_and_state_identical(tmp_path, pipelined):
    """Kill a committing process at random moments; after each restart the audit equals the state."""
    step = 4000
    # How long one child needs for `step` events on this machine right now: kills land inside that.
    calibration, state_dir = tmp_path / "calibration", tmp_path / "state"
    calibration.mkdir()
    state_dir.mkdir()
    started = time.monotonic()
    assert _run_child(calibration, step, None, pipelined) == 0
    full_run = time.monotonic() - started
    rng = random.Random(7)
    kills = 0
    for round_ in range(12):
        events = step * (round_ + 1)  # every child has `step` new events to commit when it resumes
        status = _run_child(state_dir, events, rng.uniform(0.1, 0.9) * full_run, pipelined)
        kills += os.WIFSIGNALED(status)
        consumer, _, _ = make_consumer(state_dir, MemoryLog(), MemoryDlq(), env=AUDIT_ENV)
        audit = list(read_audit(audit_dir(state_dir)))
        state = consumer.state
        consumer.store.close()
        consumer.audit.close()
        assert len({d["request_id"] for d in audit}) == len(audit) == state.applied
        assert sum(d["result"] for d in audit) == state.total
        for partition in (0, 1):
            offsets = [d["offset"] for d in audit if d["partition"] == partition]
            assert offsets == list(range(state.next_offsets.get(partition, 0)))
    assert kills >= 6  # most runs were killed mid-stream, not after finishing
    assert _run_child(state_dir, events, None, pipelined) == 0  # then run to the end undisturbed
    consumer, _, _ = make_consumer(state_dir, MemoryLog(), MemoryDlq(), env=AUDIT_ENV)
    assert consumer.state.applied == events
    assert consumer.state.total == sum(range(events)) + events
    assert len(list(read_audit(audit_dir(state_dir)))) == events
    consumer.store.close()
