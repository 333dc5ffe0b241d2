"""`sumflow-adder`: the gRPC adder's console script.

Exit status: 0 after a clean SIGTERM/SIGINT shutdown, 2 for a configuration error (one line on
stderr), 1 when it cannot start (Kafka unreachable within the start budget, port in use, ...).
With SUMFLOW_ADDER_PROCESSES=N>1 this process supervises N worker processes sharing the gRPC port.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading

from sumflow.config import AdderConfig, ConfigError, load_adder_config
from sumflow.entrypoints.adder_worker_env import is_worker

log = logging.getLogger("sumflow.adder")


def main(argv: list[str] | None = None) -> None:
    from sumflow.entrypoints.service_args import service_parser

    service_parser(
        "sumflow-adder",
        "adder",
        "Serve sumflow.v1.SumService/AddNumbers over gRPC (plus health and reflection) until SIGTERM or SIGINT. "
        "Exit status: 0 after a clean stop, 2 on a configuration error, 1 when it cannot start.",
    ).parse_args(argv)
    try:
        cfg = load_adder_config()
        if cfg.processes > 1 and cfg.grpc_listen.endswith(":0"):
            raise ConfigError("SUMFLOW_GRPC_LISTEN: a fixed port is required when SUMFLOW_ADDER_PROCESSES > 1")
    except ConfigError as exc:
        print(f"sumflow-adder: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)

    from sumflow.observability.logging import setup_logging

    setup_logging("adder", cfg.common.log_level)
    if cfg.processes > 1 and not is_worker():
        from sumflow.entrypoints.adder_supervisor import run_supervisor

        sys.exit(run_supervisor(cfg))
    sys.exit(run_single(cfg, worker=is_worker()))


def _install_stop_handlers() -> threading.Event:
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return stop


def run_single(cfg: AdderConfig, *, worker: bool = False) -> int:
    """Serve in this process until SIGTERM/SIGINT (a worker leaves metrics to its supervisor)."""
    from sumflow.adapters.event_publisher import BrokerUnreachable
    from sumflow.entrypoints.adder_app import build_adder
    from sumflow.observability import sdnotify

    stop = _install_stop_handlers()
    try:
        app = build_adder(cfg, serve_metrics=not worker)
    except BrokerUnreachable as exc:
        log.error("cannot start: %s", exc)
        return 1
    except ConfigError as exc:  # a TLS file that is not PEM (read when the server is built)
        log.error("configuration error: %s", exc)
        return 2
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:  # the metrics port (a gRPC bind failure names its address)
            log.error("cannot start: %s (SUMFLOW_METRICS_LISTEN) is already in use", cfg.metrics_listen)
        else:
            log.error("cannot start: %s", exc)
        return 1
    app.start()
    # A worker names itself: the supervisor counts one READY=1 per worker pid.
    sdnotify.notify(f"READY=1\nMAINPID={os.getpid()}" if worker else "READY=1")
    parent = os.getppid()
    while not stop.wait(1.0):
        if worker and os.getppid() != parent:
            log.error("supervisor gone: stopping")
            break
    sdnotify.notify("STOPPING=1")
    app.drain(cfg.common.drain_seconds)
    app.stop()
    return 0


if __name__ == "__main__":
    main()
