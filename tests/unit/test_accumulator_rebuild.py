"""The rebuild use case on real files (audit segments, state.db, total.json); the topic is in memory.

The Kafka side (KafkaTopicReader against a broker) is exercised by the `rebuild` tests in
tests/integration/test_accumulator_process.py and tests/integration/test_sumflow_cli.py.
"""

from __future__ import annotations

import functools
import uuid

import pytest

from sumflow.adapters.audit_log import AuditPosition, read_audit
from sumflow.adapters.state_dir import audit_dir, move_state_db_aside
from sumflow.adapters.total_file import read_total_file, write_total_file
from sumflow.bootstrap.accumulator import new_audit_log, new_store, open_state
from sumflow.config import load_accumulator_config
from sumflow.domain.events import SummationEvent
from sumflow.domain.ledger import Record
from sumflow.service_layer.rebuild import RebuildError, StateRebuild, rebuild
from tests.fixtures.event_records import batch_value, event_value


class MemoryTopic:
    """A topic read from its first offsets to its end, in polls of `per_poll` records."""

    topic = "summation"
    servers = "memory"

    def __init__(self, partitions: dict[int, list[bytes | None]], per_poll: int = 3) -> None:
        self.records = [Record(p, o, None, v) for p, values in sorted(partitions.items()) for o, v in enumerate(values)]
        self.ends = {p: len(values) for p, values in partitions.items()}
        self.per_poll = per_poll
        self.read = 0
        self.closed = False

    def bounds(self):
        return {p: 0 for p in self.ends}, dict(self.ends)

    def poll(self):
        chunk = self.records[self.read : self.read + self.per_poll]
        self.read += len(chunk)
        return chunk

    def done(self):
        return self.read == len(self.records)

    def close(self):
        self.closed = True


def _config(state_dir, **env):
    return load_accumulator_config({"SUMFLOW_STATE_DIR": str(state_dir), **env})


def _parts(config, topic):
    audit = new_audit_log(config)
    audit.directory.mkdir(parents=True, exist_ok=True)
    return StateRebuild(
        audit=audit,
        topic=(lambda: topic) if topic is not None else None,
        new_store=functools.partial(new_store, config),
        move_aside=functools.partial(move_state_db_aside, config.state_dir),
        write_total=functools.partial(write_total_file, config.state_dir),
        window_max_ids=config.applied_window_max_ids,
    )


def _write_audit(config, events):
    audit = new_audit_log(config)
    audit.recover(AuditPosition(1, 0))
    audit.append_events(events, 1_700_000_000.0)
    audit.close()


def test_rebuild_takes_the_audit_then_what_the_topic_adds_each_id_once(tmp_path):
    config = _config(tmp_path)
    ids = [str(uuid.uuid4()) for _ in range(8)]
    in_audit = [SummationEvent(ids[i], i, 1, i + 1, 1_700_000_000_000, 0, i) for i in range(4)]
    _write_audit(config, in_audit)
    (tmp_path / "state.db").write_bytes(b"garbage")  # the state that could not be trusted
    topic = MemoryTopic(
        {
            0: [event_value(ids[i], i, 1) for i in range(6)],  # 0..3 already in the audit, 4 and 5 new
            1: [b"{not json", event_value(ids[4], 4, 1), event_value(ids[6], 6, 1), None],
        }
    )
    report = rebuild(_parts(config, topic))
    assert topic.closed
    assert (report.from_audit, report.from_kafka, report.invalid_skipped) == (4, 3, 2)
    assert report.applied == 7 and report.total == sum(i + 1 for i in (0, 1, 2, 3, 4, 5, 6))
    assert report.next_offsets == {0: 6, 1: 4}
    assert [p.rsplit("/", 1)[1].split(".corrupt-")[0] for p in report.moved_aside] == ["state.db"]

    store, audit, stored = open_state(config)  # the service starts on it
    try:
        assert (stored.ledger.total, stored.ledger.applied, stored.ledger.next_offsets) == (
            report.total,
            7,
            {0: 6, 1: 4},
        )
        assert store.already_applied(ids) == set(ids[:7])
        newest = store.recent(10)
        assert [e.seq for e in newest] == [7, 6, 5, 4, 3, 2, 1]
        assert newest[0].event[:4] == (ids[6], 6, 1, 7) and (newest[0].event.partition, newest[0].event.offset) == (
            1,
            2,
        )
    finally:
        store.close()
        audit.close()
    docs = list(read_audit(audit_dir(tmp_path)))
    assert [d["request_id"] for d in docs] == ids[:7]
    assert read_total_file(tmp_path)["total"] == report.total


def test_rebuild_reads_every_summation_of_a_v2_record(tmp_path):
    config = _config(tmp_path)
    ids = [str(uuid.uuid4()) for _ in range(5)]
    topic = MemoryTopic(
        {
            0: [
                event_value(ids[0], 0, 10),
                batch_value([(ids[i], i, 10) for i in range(4)]),  # the first one again: counted once
                batch_value([(ids[4], 4, 10), (str(uuid.uuid4()), 1, 1)])[:-3],  # torn: invalid as a whole
            ]
        }
    )
    report = rebuild(_parts(config, topic))
    assert (report.from_kafka, report.invalid_skipped, report.applied) == (4, 1, 4)
    assert report.total == sum(i + 10 for i in range(4)) and report.next_offsets == {0: 3}
    docs = list(read_audit(audit_dir(tmp_path)))
    assert [(d["request_id"], d["offset"]) for d in docs] == [(ids[0], 0)] + [(ids[i], 1) for i in (1, 2, 3)]


def test_audit_only_rebuild_never_reads_the_topic(tmp_path):
    config = _config(tmp_path)
    events = [SummationEvent(str(uuid.uuid4()), i, 2, i + 2, 1, i % 2, i // 2) for i in range(5)]
    _write_audit(config, events)
    with open(audit_dir(tmp_path) / "audit-000001.jsonl", "ab") as handle:
        handle.write(b'{"request_id": "torn')  # a crash in the middle of a line
    report = rebuild(_parts(config, None))
    assert (report.applied, report.total, report.from_kafka) == (5, sum(i + 2 for i in range(5)), 0)
    assert report.next_offsets == {0: 3, 1: 2}
    assert report.moved_aside == []
    assert len(list(read_audit(audit_dir(tmp_path)))) == 5


def test_window_keeps_the_newest_ids(tmp_path):
    config = _config(tmp_path, SUMFLOW_APPLIED_WINDOW_MAX_IDS="1000")
    events = [SummationEvent(str(uuid.uuid4()), i, 0, i, 1, 0, i) for i in range(1500)]
    _write_audit(config, events)
    rebuild(_parts(config, None))
    store, audit, _ = open_state(config)
    try:
        assert store.window_size() == 1000
        assert store.already_applied([events[499].request_id, events[500].request_id]) == {events[500].request_id}
        assert store.recent(1)[0].seq == 1500
    finally:
        store.close()
        audit.close()


def test_a_missing_topic_fails_and_leaves_the_state_alone(tmp_path):
    config = _config(tmp_path)
    (tmp_path / "state.db").write_bytes(b"garbage")
    with pytest.raises(RebuildError, match="topic 'summation' not found on memory"):
        rebuild(_parts(config, MemoryTopic({})))
    assert (tmp_path / "state.db").read_bytes() == b"garbage"
