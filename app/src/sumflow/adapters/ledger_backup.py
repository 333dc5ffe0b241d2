"""A consistent copy of the accumulator's state directory, taken while it runs, and its restore.

A backup is a directory:
- `state.db`: a snapshot of the live database by SQLite's online backup API (one step, so one read
  transaction: the committed state of one instant, whatever the writer does meanwhile);
- `audit/`: the audit segments up to exactly the position that snapshot records (the audit is
  appended before each commit and only ever truncated back to a committed position, so the live
  files hold at least those bytes when they are copied after the snapshot);
- `total.json`, rendered from the snapshot;
- `backup.json`: what it holds (schema version, total, applied, next offsets, audit position).

Restoring writes those files into a state directory that holds no state. The accumulator started
there resumes at the snapshot's offsets: what the topic received after the backup is read again
from Kafka and counted once (the de-dup window travels in state.db).

Both directions copy bytes and read the ledger row with plain SQL: they never migrate the schema, so
the backup of an older release restores as that release wrote it (a rollback restores it for the
release that can read it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sumflow.adapters.audit_log import AuditPosition, list_segments, segment_name
from sumflow.adapters.ledger_store import read_ledger_row, state_db_path
from sumflow.adapters.state_dir import AUDIT_DIR_NAME
from sumflow.adapters.total_file import fsync_dir, total_file_path, write_atomically, write_total_file
from sumflow.domain.ledger import LedgerState

MANIFEST_NAME = "backup.json"
FORMAT = 1


class BackupError(RuntimeError):
    """The backup or restore cannot be done; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """The committed state a backup holds (its `backup.json`)."""

    schema_version: int
    ledger: LedgerState
    audit: AuditPosition
    updated_at: float
    created_at: str

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "created_at": self.created_at,
            "schema_version": self.schema_version,
            "total": self.ledger.total,
            "applied": self.ledger.applied,
            "next_offsets": {str(p): o for p, o in sorted(self.ledger.next_offsets.items())},
            "audit": {"segment": self.audit.segment, "size": self.audit.size},
            "updated_at": self.updated_at,
        }
        return (json.dumps(doc, indent=2) + "\n").encode()  # stdlib json: a total beyond int64 stays exact

    @classmethod
    def from_json(cls, data: bytes) -> BackupInfo:
        doc: dict[str, Any] = json.loads(data)
        if doc.get("format") != FORMAT:
            raise BackupError(f"unknown backup format {doc.get('format')!r} (this release reads {FORMAT})")
        ledger = LedgerState(
            int(doc["total"]), int(doc["applied"]), {int(p): int(o) for p, o in doc["next_offsets"].items()}
        )
        audit = AuditPosition(int(doc["audit"]["segment"]), int(doc["audit"]["size"]))
        return cls(int(doc["schema_version"]), ledger, audit, float(doc["updated_at"]), str(doc["created_at"]))

    def summary(self) -> str:
        offsets = {p: o for p, o in sorted(self.ledger.next_offsets.items())}
        return (
            f"total={self.ledger.total} applied={self.ledger.applied} schema_version={self.schema_version} "
            f"next_offsets={offsets}"
        )


def read_ledger(db: Path) -> tuple[int, LedgerState, AuditPosition, float]:
    """(schema version, ledger, audit position, updated_at) of a state.db of any schema version."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    try:
        check = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        if check != ["ok"]:
            raise BackupError(f"{db}: integrity check failed: {'; '.join(check[:3])}")
        row = read_ledger_row(conn)
        if row is None:
            raise BackupError(f"{db}: the ledger row is missing")
        version, total, applied, segment, size, updated_at = row
        offsets = dict(conn.execute("SELECT partition, next_offset FROM offsets").fetchall())
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{db}: {exc}") from None
    finally:
        conn.close()
    return int(version), LedgerState(int(total), int(applied), offsets), AuditPosition(segment, size), updated_at


def backup_state(state_dir: Path, target: Path) -> BackupInfo:
    """Write a consistent backup of `state_dir` (the service may be running) into the new directory `target`."""
    source = state_db_path(state_dir)
    if not source.is_file():
        raise BackupError(f"{source}: no state database to back up")
    if target.exists():
        raise BackupError(f"{target} exists: choose a new backup directory")
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / AUDIT_DIR_NAME).mkdir(parents=True)
    try:
        _snapshot(source, state_db_path(partial))
        version, ledger, audit, updated_at = read_ledger(state_db_path(partial))
        _copy_audit(state_dir / AUDIT_DIR_NAME, partial / AUDIT_DIR_NAME, audit)
        write_total_file(partial, ledger, updated_at)
        info = BackupInfo(version, ledger, audit, updated_at, _now())
        write_atomically(partial / MANIFEST_NAME, info.to_json())
        fsync_dir(partial / AUDIT_DIR_NAME)
        partial.rename(target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return info


def read_backup(backup: Path) -> BackupInfo:
    """The manifest of a backup directory, checked against its state.db."""
    try:
        info = BackupInfo.from_json((backup / MANIFEST_NAME).read_bytes())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{backup}: not a sumflow accumulator backup ({exc})") from None
    version, ledger, audit, _ = read_ledger(state_db_path(backup))
    if (version, ledger, audit) != (info.schema_version, info.ledger, info.audit):
        raise BackupError(f"{backup}: {MANIFEST_NAME} does not match its state.db")
    return info


def state_files(state_dir: Path) -> list[Path]:
    """The state a directory holds (the database, total.json, audit segments): empty for a fresh one."""
    found = [p for p in (state_db_path(state_dir), total_file_path(state_dir)) if p.exists()]
    found += [p for p in state_dir.glob(f"{state_db_path(state_dir).name}-*") if p.exists()]
    return found + [path for _, path in list_segments(state_dir / AUDIT_DIR_NAME)]


def move_state_aside(state_dir: Path) -> Path | None:
    """Move the state files into STATE_DIR/replaced-<UTC time>/ (kept for inspection); None if there were none."""
    existing = state_files(state_dir)
    if not existing:
        return None
    aside = state_dir / f"replaced-{_now().replace(':', '')}"
    (aside / AUDIT_DIR_NAME).mkdir(parents=True)
    for path in existing:
        path.rename(aside / path.relative_to(state_dir))
    fsync_dir(state_dir)
    return aside


def schema_version_of(state_dir: Path) -> int | None:
    """The schema version of the state directory's database, None when it has none."""
    db = state_db_path(state_dir)
    return read_ledger(db)[0] if db.is_file() else None


def restore_state(backup: Path, state_dir: Path) -> BackupInfo:
    """Copy a backup into `state_dir`, which must hold no state (the caller holds its lock)."""
    info = read_backup(backup)
    existing = state_files(state_dir)
    if existing:
        raise BackupError(
            f"{state_dir} already holds state ({', '.join(str(p) for p in existing[:3])}): "
            "move it aside first (stop the service, rename the directory)"
        )
    audit_target = state_dir / AUDIT_DIR_NAME
    audit_target.mkdir(parents=True, exist_ok=True)
    try:
        _copy_audit(backup / AUDIT_DIR_NAME, audit_target, info.audit)
        fsync_dir(audit_target)
        write_total_file(state_dir, info.ledger, info.updated_at)
        db = state_db_path(state_dir)
        staged = db.with_name(f".{db.name}.restoring")
        shutil.copyfile(state_db_path(backup), staged)
        with open(staged, "rb+") as handle:
            os.fsync(handle.fileno())
        staged.rename(db)  # last: a state directory without state.db is refused at start
        fsync_dir(state_dir)
    except BaseException:
        for path in state_files(state_dir):
            path.unlink(missing_ok=True)
        raise
    return info


def _snapshot(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None)
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        src.execute("PRAGMA busy_timeout = 5000")
        src.backup(dst, pages=-1)  # every page in one step: one consistent read transaction
        dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{source}: cannot back up: {exc}") from None
    finally:
        dst.close()
        src.close()
    with open(target, "rb+") as handle:
        os.fsync(handle.fileno())


def _copy_audit(source: Path, target: Path, position: AuditPosition) -> None:
    """Segments up to `position`: the older ones whole, the position's segment cut at its size."""
    current = source / segment_name(position.segment)
    if position.size > 0 and not current.is_file():
        raise BackupError(f"{current} is gone (rotated away meanwhile?): take the backup again")
    for number, path in list_segments(source):
        if number > position.segment:
            continue
        out = target / path.name
        with open(path, "rb") as src, open(out, "wb") as dst:
            if number == position.segment:
                data = src.read(position.size)
                if len(data) < position.size:
                    raise BackupError(f"{path} holds {len(data)} bytes but the state says {position.size}")
                dst.write(data)
            else:
                shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
    if not (target / segment_name(position.segment)).exists():
        (target / segment_name(position.segment)).touch()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
