"""`sumflow-accumulator`: run the REST accumulator, or `sumflow-accumulator rebuild` to recover its state.

Exit status: 0 after SIGTERM/SIGINT (batch in progress committed), 2 on a configuration error or bad
arguments, 1 when the state cannot be trusted or is in use (one line on stderr naming the file and
the recovery command).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

USAGE = """usage: sumflow-accumulator            run the service (configured by SUMFLOW_* environment variables)
       sumflow-accumulator rebuild [--audit-only]
                                  rebuild state.db from the audit log and the Kafka topic (service stopped)"""


def _err(message: str) -> None:
    print(f"sumflow-accumulator: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if args and args[0] == "rebuild":
        if set(args[1:]) - {"--audit-only"}:
            _err(f"unknown arguments {' '.join(args[1:])}\n{USAGE}")
            return 2
        return _rebuild(audit_only="--audit-only" in args[1:])
    if args:
        _err(f"unknown arguments {' '.join(args)}\n{USAGE}")
        return 2
    return _serve()


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
    from sumflow.bootstrap_accumulator import StateDirLocked, build
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
    finally:  # whatever happened above, stop the threads so the process can exit
        accumulator.stop()
        shutdown_tracing()
    return code


def _rebuild(*, audit_only: bool) -> int:
    config = _load_config()
    if config is None:
        return 2
    from sumflow.accumulator_rebuild import RebuildError, rebuild
    from sumflow.bootstrap_accumulator import StateDirLocked
    from sumflow.observability.logging import setup_logging

    setup_logging("accumulator", config.common.log_level)
    try:
        report = rebuild(config, use_kafka=not audit_only)
    except (RebuildError, StateDirLocked) as exc:
        _err(f"rebuild failed: {exc}")
        return 1
    except Exception as exc:
        _err(f"rebuild failed: {type(exc).__name__}: {exc}")
        return 1
    print(
        f"rebuilt {config.state_dir}: total={report.total} applied={report.applied} "
        f"(audit {report.from_audit}, topic {report.from_kafka}, invalid skipped {report.invalid_skipped}) "
        f"next_offsets={report.next_offsets} old files kept: {', '.join(report.moved_aside) or 'none'}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
