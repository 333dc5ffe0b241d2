"""`sumflow-accumulator backup|restore` (also `sumflow backup|restore`), run where the accumulator runs.

Both read the accumulator's SUMFLOW_* environment (the state directory). `backup` works while the
service runs (SQLite's online backup: one consistent snapshot); `restore` needs it stopped (the
state directory's lock). Exit status: 0 done (or nothing to do), 2 configuration error, 1 failed.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _config(prog: str):  # noqa: ANN202 - AccumulatorConfig or None (imports stay lazy)
    from sumflow.config import ConfigError, load_accumulator_config

    try:
        return load_accumulator_config()
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr, flush=True)
        return None


def run_backup(prog: str, target: Path) -> int:
    config = _config(prog)
    if config is None:
        return 2
    from sumflow.adapters.ledger_backup import BackupError, backup_state

    try:
        info = backup_state(config.state_dir, target)
    except (BackupError, OSError) as exc:
        print(f"{prog}: backup failed: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"backed up {config.state_dir} to {target}: {info.summary()}", flush=True)
    return 0


def run_restore(prog: str, source: Path, *, replace: bool, if_schema_differs: bool) -> int:
    """Restore `source` into the state directory (service stopped).

    replace: move existing state aside into STATE_DIR/replaced-<time>/ first (else refuse).
    if_schema_differs: do nothing when the current state has the backup's schema version (a rollback
    restores only when the release it returns to cannot read the current state).
    """
    config = _config(prog)
    if config is None:
        return 2
    from sumflow.adapters.ledger_backup import (
        BackupError,
        move_state_aside,
        read_backup,
        restore_state,
        schema_version_of,
    )
    from sumflow.adapters.state_dir import StateDirLocked, lock_state_dir

    try:
        lock = lock_state_dir(config.state_dir)
    except StateDirLocked as exc:
        print(f"{prog}: restore failed: {exc}: stop the service first", file=sys.stderr, flush=True)
        return 1
    aside = None
    try:
        info = read_backup(source)
        current = schema_version_of(config.state_dir)
        if if_schema_differs and current == info.schema_version:
            print(f"kept {config.state_dir}: its schema version {current} is the backup's", flush=True)
            return 0
        if replace:
            aside = move_state_aside(config.state_dir)
        info = restore_state(source, config.state_dir)
    except (BackupError, OSError) as exc:
        print(f"{prog}: restore failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        lock.close()
    kept = f"; the previous state is in {aside}" if aside is not None else ""
    print(
        f"restored {source} into {config.state_dir}: {info.summary()}; on start the accumulator reads the topic "
        f"from these offsets{kept}",
        flush=True,
    )
    return 0
