"""`sumflow rebuild` and `sumflow-accumulator rebuild`: one command, run where the accumulator runs.

It reads the accumulator's SUMFLOW_* environment (state directory, Kafka, topic), needs the service
stopped (the state directory's lock), and reports progress on stderr and the result on stdout.
Exit status: 0 rebuilt, 2 configuration error, 1 the rebuild failed (the state is left as it was
unless the message says otherwise).
"""

from __future__ import annotations

import sys


def run_rebuild(prog: str, *, audit_only: bool, progress: bool = True) -> int:
    from sumflow.config import ConfigError, load_accumulator_config

    try:
        config = load_accumulator_config()
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    from sumflow.adapters.state_dir import StateDirLocked
    from sumflow.bootstrap.accumulator import rebuild_state
    from sumflow.entrypoints.progress_bar import ProgressBar
    from sumflow.observability.logging import setup_logging
    from sumflow.service_layer.rebuild import NoProgress, RebuildError

    setup_logging("accumulator", config.common.log_level)
    bar = ProgressBar() if progress else None
    try:
        report = rebuild_state(config, use_kafka=not audit_only, progress=bar or NoProgress())
    except (RebuildError, StateDirLocked) as exc:
        print(f"{prog}: rebuild failed: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:
        print(f"{prog}: rebuild failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if bar is not None:
            bar.close()
    print(
        f"rebuilt {config.state_dir}: total={report.total} applied={report.applied} "
        f"(audit {report.from_audit}, topic {report.from_kafka}, invalid skipped {report.invalid_skipped}) "
        f"next_offsets={report.next_offsets} old files kept: {', '.join(report.moved_aside) or 'none'}",
        flush=True,
    )
    return 0
