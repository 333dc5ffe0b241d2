"""Start the real sumflow services for a benchmark, timing start -> READY=1 (sd_notify)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from benchmarks.procstats import tree_pids

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
# Extra environment for every service a benchmark starts (run.py --service-env KEY=VALUE).
EXTRA_ENV: dict[str, str] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """One console-script process (`sumflow-adder` / `sumflow-accumulator`) with its own notify socket."""

    def __init__(self, script: str, env: dict[str, str], workdir: Path) -> None:
        self.script = script
        self.env = env
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s: float | None = None
        self.stop_s: float | None = None  # SIGTERM -> exit
        self.stop_killed = False  # had to SIGKILL after the timeout
        self._notify: socket.socket | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> float:
        """Start and wait for READY=1; returns seconds from spawn to READY=1."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        notify_path = self.workdir / f"{self.script}.notify"
        notify_path.unlink(missing_ok=True)
        # Like systemd, keep the notify socket open for the service's life (it also sends STOPPING=1).
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(notify_path))
        log = (self.workdir / f"{self.script}.log").open("ab")
        env = {**os.environ, **self.env, "NOTIFY_SOCKET": str(notify_path)}
        started = time.monotonic()
        self.proc = subprocess.Popen([str(VENV_BIN / self.script)], env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = started + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.script} sent no READY=1 in {timeout}s (log: {self.log_tail()})")
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.script} exited {self.proc.returncode}: {self.log_tail()}")
            self._notify.settimeout(min(remaining, 0.5))
            try:
                message = self._notify.recv(4096).decode()
            except TimeoutError:
                continue
            if "READY=1" in message.split("\n"):
                self.ready_s = time.monotonic() - started
                return self.ready_s

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.workdir / f"{self.script}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._close_notify()
            return
        pids = tree_pids(self.proc.pid)
        begin = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            self.stop_s = round(time.monotonic() - begin, 2)
        except subprocess.TimeoutExpired:
            self.stop_killed = True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(10)
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
    with urllib.request.urlopen(f"{base_url}/api/total", timeout=timeout) as resp:
        return json.loads(resp.read())
