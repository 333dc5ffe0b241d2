"""SUMFLOW_ADDER_PROCESSES=N > 1: one supervisor process and N worker processes on one gRPC port.

Python serves gRPC on about one core per process, so N workers (separate interpreters started with
`python -m sumflow.entrypoints.adder_main`, never forked from a process that holds gRPC or Kafka
threads) bind the same port with SO_REUSEPORT and the kernel spreads connections across them.
The supervisor:
- gives the workers a private PROMETHEUS_MULTIPROC_DIR and serves the aggregated metrics (plus
  process CPU/memory summed over itself and its workers) on SUMFLOW_METRICS_LISTEN;
- gives the workers its own sd_notify socket, and tells systemd READY=1 once every worker is serving;
- restarts a worker that dies (with backoff when it keeps dying), and exits 1 if one fails to start;
- on SIGTERM/SIGINT sends STOPPING=1, forwards SIGTERM (each worker turns its health NOT_SERVING,
  serves SUMFLOW_DRAIN_SECONDS more, then finishes its in-flight calls), waits for them, exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from sumflow.config import AdderConfig, split_listen
from sumflow.entrypoints.adder_worker_env import WORKER_ENV
from sumflow.entrypoints.http_server import BackgroundHttpServer, serve_metrics
from sumflow.observability import sdnotify

log = logging.getLogger("sumflow.adder")

_START_TIMEOUT_SECONDS = 120.0  # Kafka bootstrap retries of a worker are bounded well below this
_RESTART_WINDOW_SECONDS = 60.0
_RESTARTS_BEFORE_BACKOFF = 5
_BACKOFF_SECONDS = 5.0


class _Workers:
    def __init__(self, count: int, env: dict[str, str]) -> None:
        self.count = count
        self._env = env
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts: list[float] = []

    def spawn(self, slot: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sumflow.entrypoints.adder_main"],
            env=self._env | {"SUMFLOW_ADDER_WORKER_SLOT": str(slot)},
        )
        self.procs[slot] = proc
        return proc

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def signal_all(self, signum: int) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signum)

    def wait_all(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker did not stop in time: killing it", extra={"worker_pid": proc.pid})
                proc.kill()
                proc.wait(5)


def _read_ready(sock: socket.socket, timeout: float) -> int | None:
    """One sd_notify datagram from a worker; returns its pid if it says READY=1."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except (TimeoutError, BlockingIOError, InterruptedError):
        return None
    fields = dict(line.split("=", 1) for line in data.decode(errors="replace").splitlines() if "=" in line)
    if fields.get("READY") == "1" and fields.get("MAINPID", "").isdigit():
        return int(fields["MAINPID"])
    return None


def run_supervisor(cfg: AdderConfig) -> int:
    stop = _install_stop_handlers()
    tmp = Path(tempfile.mkdtemp(prefix="sumflow-adder-"))
    prom_dir = tmp / "prometheus"
    prom_dir.mkdir()
    notify_path = tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    env = dict(os.environ) | {
        WORKER_ENV: "1",
        "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),
        "NOTIFY_SOCKET": str(notify_path),
    }
    workers = _Workers(cfg.processes, env)
    metrics_server = None
    try:
        metrics_server = _serve_metrics(cfg, prom_dir, workers.pids)
        if not _start_all(workers, sock, stop):
            return 0 if stop[0] else 1  # stopped while starting is a clean stop
        sdnotify.notify("READY=1")
        log.info(
            "adder serving",
            extra={"processes": cfg.processes, "grpc_listen": cfg.grpc_listen, "worker_pids": workers.pids()},
        )
        _supervise(workers, sock, stop, prom_dir)
        sdnotify.notify("STOPPING=1")
        return 0
    finally:
        workers.signal_all(signal.SIGTERM)
        workers.wait_all(cfg.common.drain_seconds + cfg.publish_timeout_seconds + 15.0)
        if metrics_server is not None:
            metrics_server.close()
        sock.close()
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("adder stopped", extra={"pid": os.getpid()})


def _install_stop_handlers() -> list[bool]:
    stop = [False]

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
        stop[0] = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return stop


def _start_all(workers: _Workers, sock: socket.socket, stop: list[bool]) -> bool:
    for slot in range(workers.count):
        workers.spawn(slot)
    waiting = {proc.pid for proc in workers.procs.values()}
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while waiting and not stop[0]:
        if time.monotonic() > deadline:
            log.error("workers not ready in time", extra={"waiting": sorted(waiting)})
            return False
        pid = _read_ready(sock, 0.2)
        if pid is not None:
            waiting.discard(pid)
        for proc in workers.procs.values():
            if proc.pid in waiting and proc.poll() is not None:
                log.error("worker failed to start", extra={"worker_pid": proc.pid, "status": proc.returncode})
                return False
    return not stop[0]


def _supervise(workers: _Workers, sock: socket.socket, stop: list[bool], prom_dir: Path) -> None:
    from prometheus_client import multiprocess

    while not stop[0]:
        _read_ready(sock, 0.5)  # also drains later READY=1 of restarted workers
        for slot, proc in list(workers.procs.items()):
            if proc.poll() is None or stop[0]:
                continue
            multiprocess.mark_process_dead(proc.pid, str(prom_dir))
            now = time.monotonic()
            workers.restarts = [t for t in workers.restarts if now - t < _RESTART_WINDOW_SECONDS] + [now]
            log.error(
                "worker died: restarting it",
                extra={"worker_pid": proc.pid, "status": proc.returncode, "slot": slot},
            )
            if len(workers.restarts) > _RESTARTS_BEFORE_BACKOFF:
                time.sleep(_BACKOFF_SECONDS)
            if not stop[0]:
                workers.spawn(slot)


def _serve_metrics(cfg: AdderConfig, prom_dir: Path, worker_pids: Callable[[], list[int]]) -> BackgroundHttpServer:
    from prometheus_client import CollectorRegistry, Info, multiprocess

    import sumflow

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(prom_dir))
    Info("sumflow_build", "sumflow version and service", registry=registry).info(
        {"version": sumflow.__version__, "service": "adder"}
    )
    registry.register(ProcessTreeCollector(lambda: [os.getpid(), *worker_pids()]))
    host, port = split_listen(cfg.metrics_listen)
    return serve_metrics(registry, host, port, ident="sumflow-adder")


class ProcessTreeCollector:
    """Standard process_* metrics summed over the supervisor and its workers (from /proc)."""

    def __init__(self, pids: Callable[[], Iterable[int]]) -> None:
        self._pids = pids
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._boot = _boot_time()

    def collect(self) -> Iterable[object]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        cpu = rss = vms = fds = 0.0
        start = 0.0
        for pid in self._pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                fds += len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                continue
            cpu += (int(stat[11]) + int(stat[12])) / self._ticks
            vms += int(stat[20])
            rss += int(stat[21]) * self._page
            if pid == os.getpid():
                start = self._boot + int(stat[19]) / self._ticks
        yield CounterMetricFamily("process_cpu_seconds", "CPU time of the adder's processes (all workers)", cpu)
        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory of all the adder's processes", rss)
        yield GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory of all the adder's processes", vms)
        yield GaugeMetricFamily("process_open_fds", "Open file descriptors of all the adder's processes", fds)
        yield GaugeMetricFamily("process_start_time_seconds", "Start time of the adder's supervisor", start)


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0
