"""The accumulator's state directory: its lock, its audit directory, and moving a bad state.db aside."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path
from typing import IO

from sumflow.adapters.ledger_store import state_db_path
from sumflow.adapters.total_file import fsync_dir

AUDIT_DIR_NAME = "audit"
LOCK_FILE_NAME = "lock"


class StateDirLocked(RuntimeError):
    """Another accumulator (or a rebuild) uses this state directory."""


def audit_dir(state_dir: Path) -> Path:
    return state_dir / AUDIT_DIR_NAME


def lock_state_dir(state_dir: Path) -> IO[bytes]:
    """An exclusive flock on STATE_DIR/lock, held for the life of the process."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = open(state_dir / LOCK_FILE_NAME, "ab")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StateDirLocked(f"{state_dir}: another sumflow-accumulator (or rebuild) is using it") from None
    return handle


def move_state_db_aside(state_dir: Path) -> list[str]:
    """Rename state.db (and -wal/-shm) to *.corrupt-<UTC timestamp>; never delete them."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    db = state_db_path(state_dir)
    moved = []
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{db}{suffix}")
        if old.exists():
            target = Path(f"{db}{suffix}.corrupt-{stamp}")
            old.rename(target)
            moved.append(str(target))
    fsync_dir(state_dir)
    return moved
