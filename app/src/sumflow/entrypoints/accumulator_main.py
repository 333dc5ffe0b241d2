"""`sumflow-accumulator`: run the REST accumulator; `rebuild`, `backup` and `restore` its state.

Exit status: 0 after SIGTERM/SIGINT (batch in progress committed), 2 on a configuration error or bad
arguments, 1 when the state cannot be trusted or is in use (one line on stderr naming the file and
the recovery command).
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

DESCRIPTION = (
    "Run the REST accumulator until SIGTERM or SIGINT, or rebuild its state. Exit status: 0 after a clean stop, "
    "2 on a configuration error or bad arguments, 1 when the state cannot be trusted or is in use."
)


def _err(message: str) -> None:
    print(f"sumflow-accumulator: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    from sumflow.entrypoints.service_args import service_parser

    parser = service_parser("sumflow-accumulator", "accumulator", DESCRIPTION)
    commands = parser.add_subparsers(dest="command", metavar="{rebuild,backup,restore}")
    rebuild = commands.add_parser(
        "rebuild",
        help="rebuild state.db from the audit log and the Kafka topic (service stopped)",
        description="Rebuild state.db from the audit log and the Kafka topic (service stopped). "
        "Progress goes to stderr, the result to stdout.",
    )
    rebuild.add_argument("--audit-only", action="store_true", help="read only the audit log (the topic is gone)")
    rebuild.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_backup_commands(commands)
    args = parser.parse_args(argv)
    if args.command in ("backup", "restore"):
        return run_backup_command("sumflow-accumulator", args)
    if args.command == "rebuild":
        from sumflow.entrypoints.rebuild_command import run_rebuild

        return run_rebuild("sumflow-accumulator", audit_only=args.audit_only, progress=not args.no_progress)
    return _serve()


def add_backup_commands(commands: argparse._SubParsersAction) -> None:
    """The `backup` and `restore` subcommands (this script's and `sumflow`'s)."""
    backup = commands.add_parser(
        "backup",
        help="copy the state consistently into a new directory (the service may run)",
        description="Write a consistent backup of the accumulator's state (SQLite online backup, the audit log up to "
        "the same position, total.json) into a new directory. The service may be running.",
    )
    backup.add_argument("--to", type=Path, required=True, metavar="DIR", help="the backup directory (must not exist)")
    restore = commands.add_parser(
        "restore",
        help="restore a backup into the state directory (service stopped)",
        description="Restore a backup into the accumulator's state directory (service stopped). On its next start "
        "the accumulator reads the topic from the backup's offsets, so nothing is lost or counted twice.",
    )
    restore.add_argument("--from", dest="source", type=Path, required=True, metavar="DIR", help="a backup directory")
    restore.add_argument(
        "--replace", action="store_true", help="move the current state aside into STATE_DIR/replaced-<time>/ first"
    )
    restore.add_argument(
        "--if-schema-differs",
        action="store_true",
        help="do nothing when the current state already has the backup's schema version (rollback)",
    )


def run_backup_command(prog: str, args: argparse.Namespace) -> int:
    from sumflow.entrypoints.state_backup_command import run_backup, run_restore

    if args.command == "backup":
        return run_backup(f"{prog} backup", args.to)
    return run_restore(f"{prog} restore", args.source, replace=args.replace, if_schema_differs=args.if_schema_differs)


def _load_config():  # noqa: ANN202 - returns AccumulatorConfig or None
    from sumflow.config import ConfigError, load_accumulator_config

    try:
        return load_accumulator_config()
    except ConfigError as exc:
        _err(f"configuration error: {exc}")
        return None


def _serve() -> int:
    config = _load_config()
    if config is None:
        return 2
    from sumflow.adapters.ledger_store import StateCorrupt
    from sumflow.adapters.state_dir import StateDirLocked
    from sumflow.entrypoints.accumulator_server import build
    from sumflow.observability import sdnotify
    from sumflow.observability.logging import setup_logging
    from sumflow.observability.tracing import setup_tracing, shutdown_tracing

    setup_logging("accumulator", config.common.log_level)
    tracer = setup_tracing("accumulator", config.common.otlp_endpoint, instance=config.common.service_instance)
    try:
        accumulator = build(config, tracer=tracer)
    except (StateCorrupt, StateDirLocked) as exc:
        _err(f"refusing to start: {exc}")
        return 1
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            _err(f"cannot start: {config.http_listen} (SUMFLOW_HTTP_LISTEN) is already in use")
        else:
            _err(f"cannot start: {exc}")
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        accumulator.start()
        while not stop.wait(1.0):
            if not accumulator.consumer_alive():  # the consumer thread never exits on its own: a bug
                _err("consumer thread died")
                code = 1
                break
            if accumulator.status.health()[0]:  # a stalled consumer lets systemd's watchdog restart us
                sdnotify.notify("WATCHDOG=1")
        sdnotify.notify("STOPPING=1")
        if code == 0:
            _drain(accumulator, config.common.drain_seconds)
    finally:  # whatever happened above, stop the threads so the process can exit
        accumulator.stop()
        shutdown_tracing()
    return code


def _drain(accumulator, seconds: float) -> None:  # noqa: ANN001 - bootstrap's Accumulator (lazy import)
    """/readyz 503 "shutting down" while the HTTP API keeps serving, so a balancer moves away first."""
    import logging
    import time

    accumulator.status.stopping = True
    accumulator.metrics.ready.set(0)
    logging.getLogger(__name__).info("accumulator draining", extra={"drain_seconds": seconds})
    time.sleep(seconds)


if __name__ == "__main__":
    sys.exit(main())
