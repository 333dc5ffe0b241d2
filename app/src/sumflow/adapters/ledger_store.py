"""The accumulator's durable state in SQLite: one transaction per polled batch.

Tables (schema version 2):
- `ledger` (one row): total (TEXT, may exceed int64), applied count, audit position, updated_at.
- `offsets`: next offset to read per partition.
- `applied_ids`: the de-duplication window, one row per applied event: `seq` (the event's applied
  ordinal) and `request_id` as the UUID's 16 bytes, unique (the window lookup). Small rows, and a
  batch's ids are inserted in key order: the id index is the one random-access structure per event.
- `applied_batches`: `first_seq` and `applied_at` of each committed batch (time-based pruning).
- `recent_events`: the newest RECENT_EVENTS full rows (request_id as text), for /api/summations.
WAL mode with synchronous=FULL: a returned commit is on disk. Ids older than the window or beyond
its maximum size are pruned in the same transactions.

Version 1 (the first release) kept every window event as a full row in `applied_events` with a
TEXT unique request_id; `open` migrates such a file to version 2 in one transaction.

A file that is not a SQLite database, fails `PRAGMA quick_check`, or lacks the tables raises
StateCorrupt: the caller refuses to start (never resets the total to 0).
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sumflow.adapters.audit_log import AuditPosition
from sumflow.domain.events import SummationEvent
from sumflow.domain.ledger import LedgerEntry, LedgerState

STATE_DB_NAME = "state.db"
SCHEMA_VERSION = 2
RECENT_EVENTS = 1000  # /api/summations serves at most this many (entrypoints.accumulator_app.MAX_LIMIT)
# Ids per lookup statement: most of a catch-up batch in one statement (every statement releases
# and re-takes the GIL, and re-taking it can wait a switch interval behind the consumer thread).
# Statements are padded to a power of two (>= 16) with an empty key that matches nothing, so that
# sqlite3's statement cache holds a handful of them, not one per batch size (measured: +30 MiB RSS).
_LOOKUP_CHUNK = 8192
_NO_KEY = b""
_TABLES = {"ledger", "offsets", "applied_ids", "applied_batches", "recent_events"}
_TABLES_V1 = {"ledger", "offsets", "applied_events"}

_LEDGER = """
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
"""

_WINDOW_V2 = """
CREATE TABLE applied_ids (
    seq INTEGER PRIMARY KEY,
    request_id BLOB NOT NULL UNIQUE
);
CREATE TABLE applied_batches (
    first_seq INTEGER PRIMARY KEY,
    applied_at REAL NOT NULL
);
CREATE TABLE recent_events (
    seq INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    first INTEGER NOT NULL,
    second INTEGER NOT NULL,
    result INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    applied_at REAL NOT NULL,
    produced_at_ms INTEGER NOT NULL
);
"""

_SCHEMA = (
    _LEDGER
    + _WINDOW_V2
    + """
INSERT INTO ledger VALUES (1, 2, '0', 0, 1, 0, 0);
"""
)

# Version 1 -> 2, one transaction: the window's ids as 16-byte keys (inserted in key order), one
# applied_batches row per distinct applied_at (all rows of a batch share it), the newest rows.
_MIGRATE_V1_TO_V2 = (
    "INSERT INTO applied_ids(seq, request_id)"
    " SELECT seq, sumflow_uuid_bytes(request_id) FROM applied_events ORDER BY request_id",
    "INSERT INTO applied_batches(first_seq, applied_at) SELECT min(seq), applied_at FROM applied_events"
    " GROUP BY applied_at",
    'INSERT INTO recent_events(seq, request_id, first, second, result, partition, "offset", applied_at,'
    ' produced_at_ms) SELECT seq, request_id, first, second, result, partition, "offset", applied_at,'
    " produced_at_ms FROM applied_events ORDER BY seq DESC LIMIT :recent",
    "DROP TABLE applied_events",
    "UPDATE ledger SET schema_version = 2 WHERE id = 1",
)


def id_bytes(request_id: str) -> bytes:
    """A canonical request id (lower-case, hyphenated UUID) as the 16 bytes stored in applied_ids."""
    return bytes.fromhex(request_id.replace("-", ""))


def id_text(key: bytes) -> str:
    return str(uuid.UUID(bytes=key))


def _uuid_bytes_sql(text: str) -> bytes:
    """For the v1 migration: v1 stored canonical ids, but any UUID spelling maps to its bytes."""
    return uuid.UUID(text).bytes


class StateCorrupt(RuntimeError):
    """The state file exists but cannot be trusted. The message names the file."""


@dataclass(frozen=True, slots=True)
class StoredState:
    ledger: LedgerState
    audit: AuditPosition
    updated_at: float


def state_db_path(state_dir: Path) -> Path:
    return state_dir / STATE_DB_NAME


def read_ledger_row(conn: sqlite3.Connection) -> tuple[int, str, int, int, int, float] | None:
    """(schema_version, total, applied, audit_segment, audit_size, updated_at) of the ledger, or None."""
    return conn.execute(
        "SELECT schema_version, total, applied, audit_segment, audit_size, updated_at FROM ledger WHERE id = 1"
    ).fetchone()


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


class LedgerStore:
    """Owns the writer connection (used by the consumer thread only) and hands out reader connections."""

    def __init__(self, state_dir: Path, *, window_seconds: int, window_max_ids: int) -> None:
        self.path = state_db_path(state_dir)
        self.window_seconds = window_seconds
        self.window_max_ids = window_max_ids
        self._conn: sqlite3.Connection | None = None
        self._readers = threading.local()

    # -- opening -------------------------------------------------------------------------------

    def open(self, *, create: bool) -> StoredState:
        """Open (or, if allowed and absent, create) the database and load the state."""
        existed = self.path.exists()
        if not existed and not create:
            raise StateCorrupt(f"{self.path}: state database is missing")
        if existed:
            _check_header(self.path)
        try:
            conn = _connect(self.path)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            if existed:
                _check_integrity(conn, self.path)
                _migrate(conn, self.path)
            else:
                conn.executescript(f"BEGIN; {_SCHEMA} COMMIT;")
            self._conn = conn
            return self.load()
        except sqlite3.DatabaseError as exc:
            raise StateCorrupt(f"{self.path}: {exc}") from None

    def load(self) -> StoredState:
        conn = self._writer()
        row = read_ledger_row(conn)
        if row is None:
            raise StateCorrupt(f"{self.path}: the ledger row is missing")
        version, total, applied, segment, size, updated_at = row
        if version != SCHEMA_VERSION:
            raise StateCorrupt(f"{self.path}: unsupported schema version {version}")
        try:
            total_int = int(total)
        except (TypeError, ValueError):
            raise StateCorrupt(f"{self.path}: the stored total {total!r} is not an integer") from None
        offsets = dict(conn.execute("SELECT partition, next_offset FROM offsets").fetchall())
        return StoredState(LedgerState(total_int, applied, offsets), AuditPosition(segment, size), updated_at)

    def _writer(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("LedgerStore is not open")
        return self._conn

    # -- the consumer thread ---------------------------------------------------------------------

    def already_applied(self, request_ids: Sequence[str]) -> set[str]:
        """The ids among `request_ids` (canonical) applied within the window."""
        conn = self._writer()
        found: set[str] = set()
        keys = {id_bytes(rid): rid for rid in request_ids}
        unique = list(keys)
        limit = min(_LOOKUP_CHUNK, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        for start in range(0, len(unique), limit):
            chunk = unique[start : start + limit]
            size = 16
            while size < len(chunk):
                size *= 2
            chunk += [_NO_KEY] * (min(size, limit) - len(chunk))
            marks = ",".join("?" * len(chunk))
            query = f"SELECT request_id FROM applied_ids WHERE request_id IN ({marks})"  # noqa: S608
            found.update(keys[r] for (r,) in conn.execute(query, chunk))
        return found

    def commit_batch(
        self,
        state: LedgerState,
        applied: Sequence[SummationEvent],
        audit: AuditPosition,
        now: float,
    ) -> None:
        """Commit total, count, offsets, window ids, newest rows, audit position and pruning in ONE transaction.

        `applied` are the newest applied events in order, the last one being event number
        `state.applied` (canonical request ids). On any error the transaction is rolled back and
        the error re-raised.
        """
        conn = self._writer()
        first_seq = state.applied - len(applied) + 1
        ids = sorted([(id_bytes(ev.request_id), seq) for seq, ev in enumerate(applied, first_seq)])  # key order
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "UPDATE ledger SET total = ?, applied = ?, audit_segment = ?, audit_size = ?, updated_at = ?"
                " WHERE id = 1",
                (str(state.total), state.applied, audit.segment, audit.size, now),
            )
            conn.executemany(
                "INSERT INTO offsets(partition, next_offset) VALUES (?, ?)"
                " ON CONFLICT(partition) DO UPDATE SET next_offset = excluded.next_offset",
                list(state.next_offsets.items()),
            )
            if applied:
                conn.executemany("INSERT OR REPLACE INTO applied_ids(request_id, seq) VALUES (?, ?)", ids)
                conn.execute(
                    "INSERT OR REPLACE INTO applied_batches(first_seq, applied_at) VALUES (?, ?)", (first_seq, now)
                )
                newest = applied[-RECENT_EVENTS:]
                conn.executemany(
                    'INSERT OR REPLACE INTO recent_events(seq, request_id, first, second, result, partition, "offset",'
                    " applied_at, produced_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    recent_rows(newest, state.applied - len(newest) + 1, now),
                )
            self._prune(conn, state.applied, now)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _prune(self, conn: sqlite3.Connection, last_seq: int, now: float) -> None:
        by_count = last_seq - self.window_max_ids  # ids up to here are beyond the maximum size
        first_kept = conn.execute(
            "SELECT first_seq FROM applied_batches WHERE applied_at >= ? ORDER BY first_seq LIMIT 1",
            (now - self.window_seconds,),
        ).fetchone()
        by_time = first_kept[0] if first_kept else last_seq + 1  # ids before here are too old
        limit = max(by_count + 1, by_time)
        conn.execute("DELETE FROM applied_ids WHERE seq < ?", (limit,))
        conn.execute("DELETE FROM applied_batches WHERE first_seq < ?", (by_time,))
        conn.execute("DELETE FROM recent_events WHERE seq < ?", (max(limit, last_seq - RECENT_EVENTS + 1),))

    def window_size(self) -> int:
        return self._writer().execute("SELECT count(*) FROM applied_ids").fetchone()[0]

    def checkpoint(self) -> None:
        self._writer().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- HTTP threads (read-only connections, one per thread) -------------------------------------

    def recent(self, limit: int) -> list[LedgerEntry]:
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._readers.conn = conn
        rows = conn.execute(
            'SELECT seq, request_id, first, second, result, partition, "offset", applied_at, produced_at_ms'
            " FROM recent_events ORDER BY seq DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            LedgerEntry(seq, SummationEvent(rid, first, second, result, produced_at_ms, partition, offset), applied_at)
            for seq, rid, first, second, result, partition, offset, applied_at, produced_at_ms in rows
        ]


def recent_rows(
    events: Sequence[SummationEvent], first_seq: int, applied_at: float
) -> list[tuple[int, str, int, int, int, int, int, float, int]]:
    """The recent_events rows of events numbered from `first_seq` (the one row builder)."""
    return [
        (
            seq,
            ev.request_id,
            ev.first_number,
            ev.second_number,
            ev.result,
            ev.partition,
            ev.offset,
            applied_at,
            ev.produced_at_ms,
        )
        for seq, ev in enumerate(events, first_seq)
    ]


def _check_header(path: Path) -> None:
    try:
        with open(path, "rb") as handle:
            header = handle.read(16)
    except OSError as exc:
        raise StateCorrupt(f"{path}: cannot read: {exc.strerror}") from None
    if header != b"SQLite format 3\x00":
        what = "empty (truncated)" if not header else "not a SQLite database"
        raise StateCorrupt(f"{path}: file is {what}")


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    result = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    if result != ["ok"]:
        raise StateCorrupt(f"{path}: integrity check failed: {'; '.join(result[:3])}")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = _TABLES - tables
    if missing and not tables >= _TABLES_V1:  # a complete version 1 file is migrated by _migrate
        raise StateCorrupt(f"{path}: missing tables {', '.join(sorted(missing))}")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring a version 1 file to version 2 in one transaction (a crash leaves version 1 intact)."""
    row = conn.execute("SELECT schema_version FROM ledger WHERE id = 1").fetchone()
    if row is None or row[0] != 1:
        return  # the current version, or load() names what is wrong
    conn.create_function("sumflow_uuid_bytes", 1, _uuid_bytes_sql, deterministic=True)
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _WINDOW_V2.split(";"):
            if statement.strip():
                conn.execute(statement)
        for statement in _MIGRATE_V1_TO_V2:
            conn.execute(statement, {"recent": RECENT_EVENTS} if ":recent" in statement else {})
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if _TABLES - tables:
        raise StateCorrupt(f"{path}: migration to schema version 2 left tables missing")
