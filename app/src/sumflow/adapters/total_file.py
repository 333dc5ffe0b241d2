"""The human-readable `total.json` in the state directory, replaced atomically after each commit.

Write a temporary file, fsync it, rename it over `total.json`, fsync the directory: a reader (or a
crash) sees either the previous complete file or the new one, never a torn write.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from sumflow.domain.ledger import LedgerState

TOTAL_FILE_NAME = "total.json"


def total_file_path(state_dir: Path) -> Path:
    return state_dir / TOTAL_FILE_NAME


def render_total(state: LedgerState, updated_at: float) -> bytes:
    """The file's bytes. The total is written as a JSON integer (it may exceed int64)."""
    offsets = ",".join(f'"{p}":{o}' for p, o in sorted(state.next_offsets.items()))
    stamp = dt.datetime.fromtimestamp(updated_at, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return (
        f'{{"total":{state.total},"applied":{state.applied},"next_offsets":{{{offsets}}},"updated_at":"{stamp}"}}\n'
    ).encode()


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_total_file(state_dir: Path, state: LedgerState, updated_at: float) -> None:
    write_atomically(total_file_path(state_dir), render_total(state, updated_at))


def read_total_file(state_dir: Path) -> dict[str, Any]:
    """Parse total.json (big totals stay exact: orjson would refuse them, so use the stdlib)."""
    import json

    return json.loads(total_file_path(state_dir).read_bytes())
