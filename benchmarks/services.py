"""Start the real sumflow services for a benchmark, timing start -> READY=1 (sd_notify).

The process handling (spawn, log file, SIGTERM/SIGKILL) is the test harness's ServiceProcess
(tests/support/services.py); a benchmark adds a notify socket and timings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

from benchmarks.procstats import tree_pids
from tests.support.broker import free_port
from tests.support.http_client import get_json
from tests.support.services import ServiceError, ServiceProcess

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
# Extra environment for every service a benchmark starts (run.py --service-env KEY=VALUE).
EXTRA_ENV: dict[str, str] = {}

__all__ = ["REPO", "Service", "accumulator_env", "adder_env", "free_port", "get_total"]


class Service(ServiceProcess):
    """One console-script process (`sumflow-adder` / `sumflow-accumulator`) with its own notify socket."""

    def __init__(self, script: str, env: dict[str, str], workdir: Path) -> None:
        self.name = script
        self.binary = VENV_BIN / script
        super().__init__(env, workdir)
        self.ready_s: float | None = None
        self.stop_s: float | None = None  # SIGTERM -> exit
        self.stop_killed = False  # had to SIGKILL after the timeout
        self._notify: socket.socket | None = None

    def start(self, timeout: float = 30.0, wait: bool = True) -> float:  # type: ignore[override]
        """Start and wait for READY=1; returns seconds from spawn to READY=1."""
        notify_path = self.workdir / f"{self.name}.notify"
        notify_path.unlink(missing_ok=True)
        # Like systemd, keep the notify socket open for the service's life (it also sends STOPPING=1).
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(notify_path))
        self.env["NOTIFY_SOCKET"] = str(notify_path)
        started = time.monotonic()
        super().start(timeout, wait=False)
        deadline = started + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name} sent no READY=1 in {timeout}s (log: {self.log_tail(30)})")
            if not self.is_alive():
                raise RuntimeError(f"{self.name} exited {self.returncode}: {self.log_tail(30)}")
            self._notify.settimeout(min(remaining, 0.5))
            try:
                message = self._notify.recv(4096).decode()
            except TimeoutError:
                continue
            if "READY=1" in message.split("\n"):
                self.ready_s = time.monotonic() - started
                return self.ready_s

    def ready(self) -> bool:
        return self.ready_s is not None and self.is_alive()

    def stop(self, timeout: float = 30.0) -> None:  # type: ignore[override]
        """SIGTERM, timed; after `timeout` SIGKILL to the whole process tree (stop_killed)."""
        if not self.is_alive():
            self._close_notify()
            return
        assert self.pid is not None
        pids = tree_pids(self.pid)
        begin = time.monotonic()
        try:
            super().stop(timeout)
            self.stop_s = round(time.monotonic() - begin, 2)
        except ServiceError:
            self.stop_killed = True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            self._close_notify()

    def _close_notify(self) -> None:
        if self._notify is not None:
            Path(self._notify.getsockname()).unlink(missing_ok=True)
            self._notify.close()
            self._notify = None


def adder_env(bootstrap: str, topic: str, port: int, metrics_port: int, state: Path, processes: int) -> dict[str, str]:
    return {
        "SUMFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "SUMFLOW_TOPIC": topic,
        "SUMFLOW_GRPC_LISTEN": f"127.0.0.1:{port}",
        "SUMFLOW_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        "SUMFLOW_DEDUPE_DIR": str(state),
        "SUMFLOW_ADDER_PROCESSES": str(processes),
        "SUMFLOW_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        **EXTRA_ENV,
    }


def accumulator_env(bootstrap: str, topic: str, port: int, state: Path) -> dict[str, str]:
    return {
        "SUMFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "SUMFLOW_TOPIC": topic,
        "SUMFLOW_DLQ_TOPIC": f"{topic}.dlq",
        "SUMFLOW_CONSUMER_GROUP": f"bench-{topic}",
        "SUMFLOW_HTTP_LISTEN": f"127.0.0.1:{port}",
        "SUMFLOW_STATE_DIR": str(state),
        "SUMFLOW_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        **EXTRA_ENV,
    }


def get_total(base_url: str, timeout: float = 5.0) -> dict[str, int]:
    status, body = get_json(f"{base_url}/api/total", timeout=timeout)
    if status != 200:
        raise RuntimeError(f"GET /api/total -> {status} {body!r}")
    return body
