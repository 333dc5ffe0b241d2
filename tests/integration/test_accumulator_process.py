"""The `sumflow-accumulator` console script as a real process on the real broker:
config errors, readiness, SIGTERM, refusal of a corrupt state, and the `rebuild` recovery command."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest
from kafka import KafkaProducer

from harness.env import accumulator_env, process_env
from harness.ports import free_port
from harness.processes import ACCUMULATOR_BIN, AccumulatorProcess
from sumflow.adapters.audit_log import AuditPosition
from tests.fixtures.event_records import event_value

SCRIPT = str(ACCUMULATOR_BIN)  # the venv's console script


@pytest.fixture
def setup(kafka_broker, topic_factory, tmp_path):
    topic = topic_factory(partitions=2, prefix="accp")
    settings = accumulator_env(
        kafka_broker.bootstrap,
        topic,
        tmp_path / "state",
        http_port=free_port(),
        dlq_topic=topic_factory(prefix="accp-dlq"),
        SUMFLOW_HTTP_THREADS="2",
    )
    env = process_env(settings)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    procs: list[AccumulatorProcess] = []

    def start() -> AccumulatorProcess:
        """A new process on the same state and port, started (listening), not yet waited ready for."""
        proc = AccumulatorProcess(env, tmp_path / f"run-{len(procs)}")
        procs.append(proc)
        proc.start(wait=False)
        proc.wait_listening(60)
        return proc

    def produce(count: int, start_at: int) -> int:
        total = 0
        for i in range(start_at, start_at + count):
            producer.send(topic, value=event_value(str(uuid.uuid4()), i, 3))
            total += i + 3
        producer.flush(30)
        return total

    yield env, start, produce, tmp_path / "state"
    producer.close(5)
    for proc in procs:
        proc.kill()


def test_config_error_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, "SUMFLOW_HTTP_THREADS": "many", "SUMFLOW_STATE_DIR": str(tmp_path)}
    done = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "SUMFLOW_HTTP_THREADS" in done.stderr
    bad_args = subprocess.run([SCRIPT, "frobnicate"], env=env, capture_output=True, text=True, timeout=60)
    assert bad_args.returncode == 2 and "invalid choice: 'frobnicate'" in bad_args.stderr


def test_serves_then_exits_0_on_sigterm_and_resumes(setup):
    _, start, produce, state_dir = setup
    proc = start()
    proc.wait_ready(60)
    expected = produce(400, 0)
    assert proc.wait_applied(400, timeout=60) == {"total": expected, "applied": 400}
    assert proc.stop() == 0
    lines = proc.log_lines()
    assert any(line["msg"] == "accumulator ready" for line in lines)
    assert all({"ts", "level", "msg", "service"} <= set(line) for line in lines)

    expected += produce(100, 400)  # while it is down
    again = start()
    again.wait_ready(60)
    assert again.wait_applied(500) == {"total": expected, "applied": 500}
    assert again.stop() == 0
    assert json.loads((state_dir / "total.json").read_bytes())["total"] == expected


def test_corrupt_state_refuses_to_start_and_rebuild_recovers_it(setup):
    env, start, produce, state_dir = setup
    proc = start()
    proc.wait_ready(60)
    expected = produce(300, 0)
    proc.wait_applied(300)
    assert proc.stop() == 0

    db = state_dir / "state.db"
    db.write_bytes(db.read_bytes()[:1000])  # truncated
    refused = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert str(db) in refused.stderr and "sumflow-accumulator rebuild" in refused.stderr
    assert db.stat().st_size == 1000  # untouched: never silently reset

    expected += produce(50, 300)  # more events on the topic that no state has seen yet
    rebuilt = subprocess.run([SCRIPT, "rebuild"], env=env, capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"total={expected} applied=350" in rebuilt.stdout
    assert list(state_dir.glob("state.db.corrupt-*"))

    proc = start()
    proc.wait_ready(60)
    expected += produce(20, 350)
    assert proc.wait_applied(370) == {"total": expected, "applied": 370}
    assert proc.stop() == 0
    audit = [
        json.loads(line)
        for path in sorted((state_dir / "audit").glob("audit-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert len(audit) == 370 and sum(d["result"] for d in audit) == expected


def test_missing_database_with_existing_audit_is_refused(setup):
    env, start, produce, state_dir = setup
    proc = start()
    proc.wait_ready(60)
    produce(10, 0)
    proc.wait_applied(10)
    assert proc.stop() == 0
    (state_dir / "state.db").unlink()
    refused = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "state database is missing" in refused.stderr


def test_state_of_the_previous_release_schema_v1_is_migrated_and_continues(setup):
    """A state directory written by the first release (state.db schema version 1) opens: same total,
    count, offsets and de-duplication window; new events are applied, repeats of old ids are not."""
    import sqlite3

    from sumflow.adapters.audit_log import AuditLog
    from sumflow.adapters.ledger_store import recent_rows
    from sumflow.adapters.total_file import write_total_file
    from sumflow.domain.events import SummationEvent
    from sumflow.domain.ledger import LedgerState
    from tests.fixtures.ledger_v1 import write_v1_state

    env, start, _, state_dir = setup
    topic = env["SUMFLOW_TOPIC"]
    producer = KafkaProducer(bootstrap_servers=env["SUMFLOW_KAFKA_BOOTSTRAP"], acks="all")
    try:
        # what the previous release consumed and committed: 40 events of partition 0
        old_ids = [str(uuid.uuid4()) for _ in range(40)]
        for i, rid in enumerate(old_ids):
            producer.send(topic, value=event_value(rid, i, 3, produced_at_ms=1_700_000_000_000 + i), partition=0)
        producer.flush(30)
        now = time.time()
        applied = [SummationEvent(rid, i, 3, i + 3, 1_700_000_000_000 + i, 0, i) for i, rid in enumerate(old_ids)]
        audit = AuditLog(state_dir / "audit", 64 << 20, 10)
        audit.recover(AuditPosition(1, 0))
        position = audit.append_events(applied, now)
        audit.close()
        total = sum(i + 3 for i in range(40))
        rows = recent_rows(applied, 1, now)  # version 1 stored the same recent_events row layout
        write_v1_state(state_dir / "state.db", [(total, 40, {0: 40}, (position.segment, position.size), now, rows)])
        write_total_file(state_dir, LedgerState(total, 40, {0: 40}), now)

        proc = start()
        proc.wait_ready(60)
        assert json.loads(proc.get("/api/total")[1]) == {"total": total, "applied": 40}
        newest = json.loads(proc.get("/api/summations?limit=3")[1])["summations"]
        assert [(s["request_id"], s["offset"], s["result"]) for s in newest] == [
            (old_ids[i], i, i + 3) for i in (39, 38, 37)
        ]
        # the adder re-published three old ids (crash after the ack), then ten new events
        for rid in old_ids[:3]:
            producer.send(topic, value=event_value(rid, 1, 3), partition=1)
        for i in range(10):
            producer.send(topic, value=event_value(str(uuid.uuid4()), 100 + i, 3), partition=1)
            total += 103 + i
        producer.flush(30)
        assert proc.wait_applied(50) == {"total": total, "applied": 50}
        metrics = proc.get("/metrics")[1].decode()
        assert "sumflow_accumulator_duplicates_dropped_total 3.0" in metrics
        assert proc.stop() == 0
    finally:
        producer.close(5)
    conn = sqlite3.connect(state_dir / "state.db")
    try:
        assert conn.execute("SELECT schema_version, applied FROM ledger").fetchone() == (2, 50)
    finally:
        conn.close()
