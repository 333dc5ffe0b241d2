"""`sumflow-adder` / `sumflow-accumulator` (and any other program) as real subprocesses.

    adder = AdderProcess.for_broker(broker.bootstrap, topic, tmp_path / "adder")
    adder.start()                     # waits for gRPC health SERVING
    adder.add(rid, 1, 2)              # AddNumbersResponse (raises grpc.RpcError)
    adder.kill(); adder.start()       # SIGKILL, then the same ports and de-dupe dir again

    acc = AccumulatorProcess.for_broker(broker.bootstrap, topic, tmp_path / "acc")
    acc.start()                       # waits for GET /readyz == 200
    acc.start(wait=False); acc.wait_listening()   # only until its HTTP port answers
    acc.total()                       # {"total": ..., "applied": ...}

    prom = CommandProcess("prometheus", [...], workdir, ready=lambda: http_ok(url))
    prom.start()                      # any other program: same log, readiness wait and stop

The services are the console scripts next to this interpreter (the venv's `bin/`), so the harness
depends on the app only through its entry points. Ports are picked free up front and kept across
restarts. Each process's stdout/stderr is appended to `<workdir>/<name>.log` (one `===== start`
banner per start unless `banner=False`); `output_lines()` is what the process itself wrote and
`log_lines()` its JSON log records. With `notify=True` the harness binds a systemd NOTIFY_SOCKET and
readiness is `READY=1` (`ready_s` is spawn -> READY=1, as systemd measures it). Services run in a
session of their own; `stop()` times SIGTERM -> exit (`stop_s`) and SIGKILLs the whole session after
the timeout (`stop_killed`). `cpu_list="0"` (or "0,1", "0-3") starts the program under `taskset -c`,
so it and every process it starts run only on those CPUs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import grpc

from harness.env import accumulator_env, adder_env, process_env
from harness.grpc_client import AdderClient, health_status
from harness.http_client import get_json, http_get, http_ok
from harness.kafka import die_with_parent_prefix
from harness.ports import free_port, port_open

BIN_DIR = Path(sys.executable).parent
ADDER_BIN = BIN_DIR / "sumflow-adder"
ACCUMULATOR_BIN = BIN_DIR / "sumflow-accumulator"
START_BANNER = re.compile(r"===== start \d\d:\d\d:\d\d =====")


class ServiceError(AssertionError):
    """A service did not start, became unready or exited; the message carries its log tail."""


def taskset_prefix(cpu_list: str | None) -> list[str]:
    """`taskset -c <cpu_list>` (it execs the program: same pid, and its children inherit the CPUs)."""
    if cpu_list is None:
        return []
    taskset = shutil.which("taskset")
    if taskset is None:
        raise ServiceError("taskset (util-linux) is needed to pin a process to CPUs")
    return [taskset, "-c", cpu_list]


class ServiceProcess:
    """One program as a subprocess with a fixed environment; restartable on the same state."""

    name = "service"
    binary: Path = Path()

    def __init__(
        self,
        env: Mapping[str, str],
        workdir: Path,
        cwd: Path | None = None,
        *,
        log_path: Path | None = None,
        banner: bool = True,
        notify: bool = False,
        cpu_list: str | None = None,
    ) -> None:
        """`env` is the complete environment (see harness.env.process_env); `cpu_list` pins the
        process tree to those CPUs (taskset -c)."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env)
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = log_path or self.workdir / f"{self.name}.log"
        self.banner = banner
        self.notify = notify
        self.cpu_list = cpu_list
        self.starts = 0
        self.kills = 0
        self.ready_s: float | None = None  # spawn -> READY=1 of the last start (notify=True)
        self.stop_s: float | None = None  # SIGTERM -> exit of the last stop
        self.stop_killed = False  # the last stop had to SIGKILL
        self._notify: socket.socket | None = None
        self._spawned_at = 0.0

    def command(self) -> list[str]:
        return [str(self.binary)]

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 90.0, wait: bool = True) -> None:
        """Spawn the process and (unless wait=False) block until it reports ready."""
        if self.is_alive():
            raise ServiceError(f"{self.name} is already running (pid {self.pid})")
        if self.notify:
            self._open_notify()
        self.ready_s = None
        with self.log_path.open("ab") as log:
            if self.banner:
                log.write(f"===== start {time.strftime('%H:%M:%S')} =====\n".encode())
                log.flush()
            self._spawned_at = time.monotonic()
            self.process = subprocess.Popen(
                [*die_with_parent_prefix(), *taskset_prefix(self.cpu_list), *self.command()],
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        if wait:
            self.wait_ready(timeout)

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float, interval: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_alive():
                raise ServiceError(f"{self.name} exited with {self.returncode} before {what}:\n{self.log_tail()}")
            if condition():
                return
            time.sleep(interval)
        raise ServiceError(f"{self.name} not {what} after {timeout}s:\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 90.0) -> None:
        self.wait_until(
            self._notified_ready if self.notify else self.ready, "ready", timeout, 0.0 if self.notify else 0.1
        )

    def ready(self) -> bool:
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful: finish in-flight work, flush, write state). After `timeout` SIGKILL to
        the process and everything it started, and ServiceError."""
        if self.process is None:
            self._close_notify()
            return None
        try:
            if self.process.poll() is None:
                begin = time.monotonic()
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.stop_killed = True
                    self._kill_session()
                    raise ServiceError(f"{self.name} ignored SIGTERM for {timeout}s:\n{self.log_tail()}") from None
                self.stop_s = round(time.monotonic() - begin, 2)
            return self.process.returncode
        finally:
            self._close_notify()

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
            self.kills += 1

    def restart(self, timeout: float = 90.0) -> None:
        self.stop()
        self.start(timeout)

    def kill_and_restart(self, timeout: float = 90.0) -> None:
        self.kill()
        self.start(timeout)

    @contextlib.contextmanager
    def running(self, timeout: float = 60.0) -> Iterator[Self]:
        """Started and ready inside the block; SIGTERM (then SIGKILL) on the way out."""
        try:
            self.start(timeout)
            yield self
        finally:
            with contextlib.suppress(ServiceError):
                self.stop()
            self.kill()

    def _kill_session(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.kill()
        self.process.wait(10)

    # -- systemd-style readiness -------------------------------------------------------------
    def _open_notify(self) -> None:
        # Like systemd, keep the socket open for the service's life (it also sends STOPPING=1).
        self._close_notify()
        path = self.workdir / f"{self.name}.notify"
        path.unlink(missing_ok=True)
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(path))
        self.env["NOTIFY_SOCKET"] = str(path)

    def _notified_ready(self) -> bool:
        assert self._notify is not None
        if self.ready_s is not None:
            return True
        self._notify.settimeout(0.5)
        try:
            message = self._notify.recv(4096).decode()
        except TimeoutError:
            return False
        if "READY=1" in message.split("\n"):
            self.ready_s = time.monotonic() - self._spawned_at
            return True
        return False

    def _close_notify(self) -> None:
        if self._notify is not None:
            Path(self._notify.getsockname()).unlink(missing_ok=True)
            self._notify.close()
            self._notify = None

    # -- inspection --------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no log at {self.log_path})"

    def output_lines(self) -> list[str]:
        """Every line the process wrote to stdout/stderr over all its starts, without the banners."""
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if not START_BANNER.fullmatch(line)]

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log records among `output_lines()` (anything else is skipped)."""
        docs = []
        for line in self.output_lines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                docs.append(doc)
        return docs

    def wait_for_log_line(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> dict[str, Any]:
        """The first JSON log record that matches, waiting for it (bounded) while the process runs."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found.extend(doc for doc in self.log_lines() if predicate(doc))
            return bool(found)

        self.wait_until(seen, "logging the expected line", timeout, 0.2)
        return found[0]


class CommandProcess(ServiceProcess):
    """Any other program (Prometheus, node_exporter, a baseline server) with a readiness predicate."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        cpu_list: str | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(arg) for arg in argv]
        self._ready = ready
        super().__init__({**os.environ, **(env or {})}, workdir, cwd, cpu_list=cpu_list)

    def command(self) -> list[str]:
        return self.argv

    def ready(self) -> bool:
        return self._ready()


def _port(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


def _client_host(listen: str) -> str:
    host = listen.rsplit(":", 1)[0]
    return "127.0.0.1" if host in ("0.0.0.0", "::", "[::]", "") else host


class AdderProcess(ServiceProcess):
    name = "adder"
    binary = ADDER_BIN

    def __init__(self, env: Mapping[str, str], workdir: Path, **options: Any) -> None:
        super().__init__(env, workdir, **options)
        self.grpc_port = _port(self.env["SUMFLOW_GRPC_LISTEN"])
        self.metrics_port = _port(self.env["SUMFLOW_METRICS_LISTEN"])
        self.target = f"{_client_host(self.env['SUMFLOW_GRPC_LISTEN'])}:{self.grpc_port}"
        self.metrics_url = f"http://{_client_host(self.env['SUMFLOW_METRICS_LISTEN'])}:{self.metrics_port}/metrics"
        self._client: AdderClient | None = None
        self.credentials: grpc.ChannelCredentials | None = None  # TLS for health checks and `client`

    @classmethod
    def for_broker(
        cls, bootstrap: str, topic: str, workdir: Path, *, dedupe_dir: Path | None = None, **extra_env: str
    ) -> Self:
        """Free loopback ports, the de-dupe store in `<workdir>/dedupe`, the test defaults of harness.env."""
        workdir = Path(workdir)
        settings = adder_env(
            bootstrap,
            topic,
            dedupe_dir or workdir / "dedupe",
            grpc_port=free_port(),
            metrics_port=free_port(),
            **extra_env,
        )
        return cls(process_env(settings), workdir)

    def ready(self) -> bool:
        return health_status(self.target, "sumflow.v1.SumService", credentials=self.credentials) == "SERVING"

    @property
    def client(self) -> AdderClient:
        """A gRPC client on this adder's port (one channel, reconnects across restarts)."""
        if self._client is None:
            self._client = AdderClient(self.target, self.credentials)
        return self._client

    def add(self, request_id: str, first: int, second: int, timeout: float = 15.0) -> Any:
        return self.client.add(request_id, first, second, timeout=timeout)

    def metrics(self) -> str:
        return http_get(self.metrics_url)[1].decode()

    def close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def stop(self, timeout: float = 30.0) -> int | None:
        self.close_client()
        return super().stop(timeout)


class AccumulatorProcess(ServiceProcess):
    name = "accumulator"
    binary = ACCUMULATOR_BIN

    def __init__(self, env: Mapping[str, str], workdir: Path, **options: Any) -> None:
        super().__init__(env, workdir, **options)
        self.http_port = _port(self.env["SUMFLOW_HTTP_LISTEN"])
        self.base_url = f"http://{_client_host(self.env['SUMFLOW_HTTP_LISTEN'])}:{self.http_port}"

    @classmethod
    def for_broker(
        cls,
        bootstrap: str,
        topic: str,
        workdir: Path,
        *,
        dlq_topic: str | None = None,
        state_dir: Path | None = None,
        **extra_env: str,
    ) -> Self:
        """A free loopback port, the state in `<workdir>/state`, the test defaults of harness.env."""
        workdir = Path(workdir)
        settings = accumulator_env(
            bootstrap, topic, state_dir or workdir / "state", http_port=free_port(), dlq_topic=dlq_topic, **extra_env
        )
        return cls(process_env(settings), workdir)

    @property
    def state_dir(self) -> Path:
        return Path(self.env["SUMFLOW_STATE_DIR"])

    def ready(self) -> bool:
        return http_ok(f"{self.base_url}/readyz")

    def wait_listening(self, timeout: float = 90.0) -> None:
        """Until the HTTP port accepts connections (started; not necessarily ready)."""
        self.wait_until(lambda: port_open(self.http_port), "listening", timeout, 0.05)

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """(status, body) of GET `path`; a 4xx/5xx is an answer, not an exception."""
        return http_get(f"{self.base_url}{path}", timeout)

    def get_json(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        return get_json(f"{self.base_url}{path}", timeout=timeout)

    def total(self) -> dict[str, int]:
        status, body = self.get_json("/api/total")
        if status != 200:
            raise ServiceError(f"GET /api/total -> {status} {body!r}")
        return body

    def wait_applied(self, applied: int, timeout: float = 180.0) -> dict[str, int]:
        """Poll /api/total until `applied` reaches the given count; returns the last answer."""
        deadline = time.monotonic() + timeout
        last: dict[str, int] = {}
        while time.monotonic() < deadline:
            if not self.is_alive():
                raise ServiceError(f"accumulator exited with {self.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, ServiceError):
                last = self.total()
                if last["applied"] >= applied:
                    return last
            time.sleep(0.1)
        raise ServiceError(f"applied did not reach {applied} in {timeout}s (last {last}):\n{self.log_tail()}")


__all__ = [
    "ACCUMULATOR_BIN",
    "ADDER_BIN",
    "AccumulatorProcess",
    "AdderProcess",
    "CommandProcess",
    "ServiceError",
    "ServiceProcess",
]
