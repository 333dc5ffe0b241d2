"""LedgerStore on a real SQLite file: one transaction per batch, window, pruning, corruption refusal."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from sumflow.adapters.audit_log import AuditPosition
from sumflow.adapters.ledger_store import LedgerStore, StateCorrupt, state_db_path
from sumflow.domain.events import SummationEvent
from sumflow.domain.ledger import LedgerState


def _store(tmp_path, **kw):
    return LedgerStore(tmp_path, window_seconds=kw.get("window_seconds", 900), window_max_ids=kw.get("max_ids", 1000))


def _events(n, partition=0, first_offset=0):
    return [
        SummationEvent(str(uuid.uuid4()), i, 1, i + 1, 1_700_000_000_000, partition, first_offset + i) for i in range(n)
    ]


def test_fresh_store_starts_at_zero_and_commit_survives_reopen(tmp_path):
    store = _store(tmp_path)
    loaded = store.open(create=True)
    assert loaded.ledger == LedgerState(0, 0, {})
    assert loaded.audit == AuditPosition(1, 0)
    big = 2**70  # totals may exceed int64: stored as TEXT
    events = _events(3)
    store.commit_batch(LedgerState(big, 3, {0: 3, 1: 7}), events, AuditPosition(2, 123), 1000.0)
    store.close()

    again = _store(tmp_path)
    loaded = again.open(create=False)
    assert loaded.ledger == LedgerState(big, 3, {0: 3, 1: 7})
    assert loaded.audit == AuditPosition(2, 123)
    assert again.already_applied([events[0].request_id, str(uuid.uuid4()), events[2].request_id]) == {
        events[0].request_id,
        events[2].request_id,
    }
    again.close()


def test_window_lookup_handles_more_ids_than_sqlite_variables(tmp_path):
    store = _store(tmp_path, max_ids=100_000)
    store.open(create=True)
    events = _events(2500)
    store.commit_batch(LedgerState(1, 2500, {0: 2500}), events, AuditPosition(1, 0), 1000.0)
    asked = [r.request_id for r in events[::2]] + [str(uuid.uuid4()) for _ in range(1000)]
    assert store.already_applied(asked) == {r.request_id for r in events[::2]}
    store.close()


def test_failed_transaction_rolls_back_everything(tmp_path):
    store = _store(tmp_path)
    store.open(create=True)
    store.commit_batch(LedgerState(5, 1, {0: 1}), _events(1), AuditPosition(1, 10), 10.0)
    bad = [
        *_events(2),
        SummationEvent(str(uuid.uuid4()), None, 0, 0, 0, 0, 0),
    ]  # NOT NULL `first` after two good events
    with pytest.raises(sqlite3.IntegrityError):
        store.commit_batch(LedgerState(99, 3, {0: 3}), bad, AuditPosition(1, 99), 11.0)
    loaded = store.load()
    assert loaded.ledger == LedgerState(5, 1, {0: 1})
    assert loaded.audit == AuditPosition(1, 10)
    assert store.window_size() == 1
    store.close()


def test_prunes_beyond_max_ids_and_older_than_window(tmp_path):
    store = _store(tmp_path, window_seconds=60, max_ids=1000)
    store.open(create=True)
    store.commit_batch(LedgerState(0, 600, {0: 600}), _events(600), AuditPosition(1, 0), 1000.0)
    store.commit_batch(LedgerState(0, 1200, {0: 1200}), _events(600, first_offset=600), AuditPosition(1, 0), 1030.0)
    assert store.window_size() == 1000  # max ids
    newest = store.recent(3)
    assert [r.seq for r in newest] == [1200, 1199, 1198]
    # 70 s later the first batch is older than the 60 s window
    store.commit_batch(LedgerState(0, 1201, {0: 1201}), _events(1, first_offset=1200), AuditPosition(1, 0), 1070.0)
    assert store.window_size() == 601
    assert min(r.seq for r in store.recent(1000)) == 601
    store.close()


def test_garbage_file_is_refused(tmp_path):
    state_db_path(tmp_path).write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StateCorrupt, match=r"state\.db: file is not a SQLite database"):
        _store(tmp_path).open(create=True)


def test_empty_file_is_refused(tmp_path):
    state_db_path(tmp_path).write_bytes(b"")
    with pytest.raises(StateCorrupt, match="empty"):
        _store(tmp_path).open(create=True)


def test_truncated_database_is_refused(tmp_path):
    store = _store(tmp_path, max_ids=100_000)
    store.open(create=True)
    for batch in range(5):
        store.commit_batch(
            LedgerState(batch, (batch + 1) * 500, {0: (batch + 1) * 500}),
            _events(500, first_offset=batch * 500),
            AuditPosition(1, 0),
            1000.0,
        )
    store.checkpoint()
    store.close()
    path = state_db_path(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StateCorrupt, match=str(path)):
        _store(tmp_path).open(create=False)


def test_database_without_our_tables_is_refused(tmp_path):
    conn = sqlite3.connect(state_db_path(tmp_path))
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    missing = "missing tables applied_batches, applied_ids, ledger, offsets, recent_events"
    with pytest.raises(StateCorrupt, match=missing):
        _store(tmp_path).open(create=False)


def test_missing_database_is_not_created_unless_asked(tmp_path):
    with pytest.raises(StateCorrupt, match="missing"):
        _store(tmp_path).open(create=False)
    assert not state_db_path(tmp_path).exists()


def test_window_lookup_across_statement_sizes(tmp_path):
    """Lookups are padded to power-of-two statements and split beyond 8192 ids: same answers."""
    store = _store(tmp_path, max_ids=100_000)
    store.open(create=True)
    events = _events(9000)
    store.commit_batch(LedgerState(1, 9000, {0: 9000}), events, AuditPosition(1, 0), 1000.0)
    ids = [r.request_id for r in events]
    unknown = [str(uuid.uuid4()) for _ in range(500)]
    for asked in (ids[:1], ids[:17], ids[5:8200] + unknown, ids + unknown, unknown):
        assert store.already_applied(asked) == set(asked) - set(unknown)
    store.close()
