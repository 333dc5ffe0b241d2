"""A state.db in schema version 1, byte for byte what the first release wrote (migration tests).

The DDL and the commit statements are copied from adapters/ledger_store.py at 706980a (schema
version 1): every window event a full row in `applied_events` with a TEXT unique request_id.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

SCHEMA_V1 = """
CREATE TABLE ledger (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    total TEXT NOT NULL,
    applied INTEGER NOT NULL,
    audit_segment INTEGER NOT NULL,
    audit_size INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE offsets (
    partition INTEGER PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
CREATE TABLE applied_events (
    seq INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    first INTEGER NOT NULL,
    second INTEGER NOT NULL,
    result INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    applied_at REAL NOT NULL,
    produced_at_ms INTEGER NOT NULL
);
INSERT INTO ledger VALUES (1, 1, '0', 0, 1, 0, 0);
"""

# (seq, request_id, first, second, result, partition, offset, applied_at, produced_at_ms)
RowV1 = tuple[int, str, int, int, int, int, int, float, int]


def write_v1_state(
    db_path: Path,
    batches: Sequence[tuple[int, int, Mapping[int, int], tuple[int, int], float, Sequence[RowV1]]],
) -> None:
    """Create a version 1 state.db and commit `batches` as the first release did.

    Each batch is (total, applied, next_offsets, (audit_segment, audit_size), now, rows).
    """
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(f"BEGIN; {SCHEMA_V1} COMMIT;")
        for total, applied, offsets, (segment, size), now, rows in batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE ledger SET total = ?, applied = ?, audit_segment = ?, audit_size = ?, updated_at = ?"
                " WHERE id = 1",
                (str(total), applied, segment, size, now),
            )
            conn.executemany(
                "INSERT INTO offsets(partition, next_offset) VALUES (?, ?)"
                " ON CONFLICT(partition) DO UPDATE SET next_offset = excluded.next_offset",
                list(offsets.items()),
            )
            conn.executemany(
                'INSERT OR REPLACE INTO applied_events(seq, request_id, first, second, result, partition, "offset",'
                " applied_at, produced_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
