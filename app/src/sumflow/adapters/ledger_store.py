"""The accumulator's durable state in SQLite: one transaction per polled batch.

Tables:
- `ledger` (one row): total (TEXT, may exceed int64), applied count, audit position, updated_at.
- `offsets`: next offset to read per partition.
- `applied_events`: the applied events of the de-duplication window; `request_id` is unique (the
  window lookup) and `seq` (the event's applied ordinal) orders /api/summations newest first.
WAL mode with synchronous=FULL: a returned commit is on disk. Rows older than the window or beyond
its maximum size are pruned in the same transactions.

A file that is not a SQLite database, fails `PRAGMA quick_check`, or lacks the tables raises
StateCorrupt: the caller refuses to start (never resets the total to 0).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sumflow.adapters.audit_log import AuditPosition
from sumflow.domain.ledger import LedgerState

STATE_DB_NAME = "state.db"
SCHEMA_VERSION = 1
_LOOKUP_CHUNK = 900
_TABLES = {"ledger", "offsets", "applied_events"}

_SCHEMA = """
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


class StateCorrupt(RuntimeError):
    """The state file exists but cannot be trusted. The message names the file."""


@dataclass(frozen=True, slots=True)
class StoredState:
    ledger: LedgerState
    audit: AuditPosition
    updated_at: float


@dataclass(frozen=True, slots=True)
class AppliedRow:
    """One row of applied_events, as written and as served by /api/summations."""

    seq: int
    request_id: str
    first: int
    second: int
    result: int
    partition: int
    offset: int
    applied_at: float
    produced_at_ms: int


def state_db_path(state_dir: Path) -> Path:
    return state_dir / STATE_DB_NAME


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
            else:
                conn.executescript(f"BEGIN; {_SCHEMA} COMMIT;")
            self._conn = conn
            return self.load()
        except sqlite3.DatabaseError as exc:
            raise StateCorrupt(f"{self.path}: {exc}") from None

    def load(self) -> StoredState:
        conn = self._writer()
        row = conn.execute(
            "SELECT schema_version, total, applied, audit_segment, audit_size, updated_at FROM ledger WHERE id = 1"
        ).fetchone()
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
        """The ids among `request_ids` applied within the window."""
        conn = self._writer()
        found: set[str] = set()
        unique = list(dict.fromkeys(request_ids))
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT request_id FROM applied_events WHERE request_id IN ({marks})"  # noqa: S608
            found.update(r for (r,) in conn.execute(query, chunk))
        return found

    def commit_batch(
        self,
        state: LedgerState,
        rows: Iterable[tuple[int, str, int, int, int, int, int, float, int]],
        audit: AuditPosition,
        now: float,
    ) -> None:
        """Commit total, count, offsets, applied rows, audit position and pruning in ONE transaction.

        `rows` are (seq, request_id, first, second, result, partition, offset, applied_at,
        produced_at_ms). On any error the transaction is rolled back and the error re-raised.
        """
        conn = self._writer()
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
            conn.executemany(
                'INSERT OR REPLACE INTO applied_events(seq, request_id, first, second, result, partition, "offset",'
                " applied_at, produced_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._prune(conn, state.applied, now)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _prune(self, conn: sqlite3.Connection, last_seq: int, now: float) -> None:
        conn.execute("DELETE FROM applied_events WHERE seq <= ?", (last_seq - self.window_max_ids,))
        first_kept = conn.execute(
            "SELECT seq FROM applied_events WHERE applied_at >= ? ORDER BY seq LIMIT 1",
            (now - self.window_seconds,),
        ).fetchone()
        limit = first_kept[0] if first_kept else last_seq + 1
        conn.execute("DELETE FROM applied_events WHERE seq < ?", (limit,))

    def window_size(self) -> int:
        return self._writer().execute("SELECT count(*) FROM applied_events").fetchone()[0]

    def checkpoint(self) -> None:
        self._writer().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- HTTP threads (read-only connections, one per thread) -------------------------------------

    def recent(self, limit: int) -> list[AppliedRow]:
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._readers.conn = conn
        rows = conn.execute(
            'SELECT seq, request_id, first, second, result, partition, "offset", applied_at, produced_at_ms'
            " FROM applied_events ORDER BY seq DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [AppliedRow(*row) for row in rows]


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
    if missing:
        raise StateCorrupt(f"{path}: missing tables {', '.join(sorted(missing))}")
