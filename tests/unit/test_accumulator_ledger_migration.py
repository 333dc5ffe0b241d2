"""Schema version 1 (the first release) -> 2: a v1 state.db opens with its total, count, offsets,
audit position, de-duplication window and newest rows; a failing migration leaves it at v1."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from sumflow.adapters.audit_log import AuditPosition
from sumflow.adapters.ledger_store import RECENT_EVENTS, LedgerStore, StateCorrupt, state_db_path
from sumflow.domain.events import SummationEvent
from sumflow.domain.ledger import LedgerState
from tests.fixtures.ledger_v1 import write_v1_state


def _v1_rows(start_seq, n, now, partition=0, first_offset=0):
    return [
        (start_seq + i, str(uuid.uuid4()), i, 7, i + 7, partition, first_offset + i, now, 1_700_000_000_000 + i)
        for i in range(n)
    ]


def _store(tmp_path, **kw):
    return LedgerStore(tmp_path, window_seconds=kw.get("window_seconds", 900), window_max_ids=kw.get("max_ids", 10_000))


def _tables(path):
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def test_v1_file_is_migrated_with_its_state_window_and_newest_rows(tmp_path):
    first = _v1_rows(1, 700, 1000.0)
    second = _v1_rows(701, 800, 1030.0, partition=1)
    big = 2**70 + 5  # totals beyond int64 are TEXT in both versions
    write_v1_state(
        state_db_path(tmp_path),
        [
            (17, 700, {0: 700}, (1, 4096), 1000.0, first),
            (big, 1500, {0: 700, 1: 800}, (3, 123_456), 1030.0, second),
        ],
    )
    assert "applied_events" in _tables(state_db_path(tmp_path))

    store = _store(tmp_path, window_seconds=60)
    loaded = store.open(create=False)
    assert loaded.ledger == LedgerState(big, 1500, {0: 700, 1: 800})
    assert loaded.audit == AuditPosition(3, 123_456)
    assert loaded.updated_at == 1030.0
    assert store.window_size() == 1500
    known = [first[0][1], first[-1][1], second[0][1], second[-1][1]]
    assert store.already_applied([*known, str(uuid.uuid4())]) == set(known)
    newest = store.recent(RECENT_EVENTS)
    assert len(newest) == RECENT_EVENTS
    assert [r.seq for r in newest[:3]] == [1500, 1499, 1498]
    by_seq = {row[0]: row for row in first + second}
    for entry in newest:  # full rows, canonical string ids, exactly as v1 stored them
        ev = entry.event
        assert (
            entry.seq,
            ev.request_id,
            ev.first_number,
            ev.second_number,
            ev.result,
            ev.partition,
            ev.offset,
            entry.applied_at,
            ev.produced_at_ms,
        ) == by_seq[entry.seq]
    tables = _tables(state_db_path(tmp_path))
    assert "applied_events" not in tables and {"applied_ids", "applied_batches", "recent_events"} <= tables

    # the window keeps its time boundaries: 70 s after the first batch it is pruned, the second is not
    store.commit_batch(
        LedgerState(big + 8, 1501, {0: 701, 1: 800}),
        [SummationEvent(str(uuid.uuid4()), 1, 7, 8, 1, 0, 700)],
        AuditPosition(3, 123_600),
        1070.0,
    )
    assert store.window_size() == 801
    assert store.already_applied(known) == {second[0][1], second[-1][1]}
    store.close()

    again = _store(tmp_path)  # reopening a migrated file changes nothing
    assert again.open(create=False).ledger == LedgerState(big + 8, 1501, {0: 701, 1: 800})
    assert again.window_size() == 801
    again.close()


def test_v1_window_beyond_max_ids_is_pruned_by_count_after_migration(tmp_path):
    rows = _v1_rows(1, 300, 1000.0)
    write_v1_state(state_db_path(tmp_path), [(0, 300, {0: 300}, (1, 0), 1000.0, rows)])
    store = _store(tmp_path, max_ids=250)
    store.open(create=False)
    store.commit_batch(
        LedgerState(0, 301, {0: 301}),
        [SummationEvent(str(uuid.uuid4()), 0, 0, 0, 1, 0, 300)],
        AuditPosition(1, 0),
        1001.0,
    )
    assert store.window_size() == 250
    assert store.already_applied([rows[50][1], rows[51][1]]) == {rows[51][1]}
    store.close()


def test_failed_migration_leaves_the_v1_file_untouched(tmp_path):
    rows = _v1_rows(1, 20, 1000.0)
    rows[7] = (8, "not-a-uuid", 7, 7, 14, 0, 7, 1000.0, 1)  # cannot become a 16-byte key
    write_v1_state(state_db_path(tmp_path), [(5, 20, {0: 20}, (1, 10), 1000.0, rows)])
    with pytest.raises(StateCorrupt, match=str(state_db_path(tmp_path))):
        _store(tmp_path).open(create=False)
    conn = sqlite3.connect(state_db_path(tmp_path))
    try:
        assert conn.execute("SELECT schema_version, total, applied FROM ledger").fetchone() == (1, "5", 20)
        assert conn.execute("SELECT count(*) FROM applied_events").fetchone() == (20,)
    finally:
        conn.close()
    assert "applied_ids" not in _tables(state_db_path(tmp_path))
