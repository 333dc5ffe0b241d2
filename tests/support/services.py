"""`sumflow-adder` / `sumflow-accumulator` as real subprocesses (the venv's console scripts).

    adder = AdderProcess.for_broker(broker.bootstrap, topic, tmp_path / "adder")
    adder.start()                     # waits for gRPC health SERVING
    adder.add(rid, 1, 2)              # AddNumbersResponse (raises grpc.RpcError)
    adder.kill(); adder.start()       # SIGKILL, then the same ports and de-dupe dir again

    acc = AccumulatorProcess.for_broker(broker.bootstrap, topic, tmp_path / "acc")
    acc.start()                       # waits for GET /readyz == 200
    acc.total()                       # {"total": ..., "applied": ...}

    with sumflow_stack(broker.bootstrap, topic, tmp_path) as stack:   # both, stopped on exit
        stack.adder.add(...); stack.accumulator.wait_applied(n)

    prom = CommandProcess("prometheus", [...], workdir, ready=lambda: http_ok(url))
    prom.start()                      # any other program: same log, readiness wait and stop

Ports are picked free up front and kept across restarts; each process's stdout/stderr is appended
to `<workdir>/<name>.log` (one `===== start` banner per start) for debugging failed runs;
`output_lines()` is what the process itself wrote (the banners left out).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from tests.support.broker import free_port, kraft, unique_topic
from tests.support.grpc_client import AdderClient, health_status
from tests.support.http_client import get_json, http_get, http_ok

BIN_DIR = Path(sys.executable).parent
ADDER_BIN = BIN_DIR / "sumflow-adder"
ACCUMULATOR_BIN = BIN_DIR / "sumflow-accumulator"
START_BANNER = re.compile(r"===== start \d\d:\d\d:\d\d =====")


class ServiceError(AssertionError):
    """A service did not start, became unready or exited; the message carries its log tail."""


class ServiceProcess:
    """One console script as a subprocess with a fixed environment; restartable on the same state."""

    name = "service"
    binary: Path = Path()

    def __init__(self, env: Mapping[str, str], workdir: Path, cwd: Path | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **env}
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{self.name}.log"
        self.starts = 0

    def command(self) -> list[str]:
        return [str(self.binary)]

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 60.0, wait: bool = True) -> None:
        """Spawn the process and (unless wait=False) block until it reports ready."""
        if self.is_alive():
            raise ServiceError(f"{self.name} is already running (pid {self.pid})")
        with self.log_path.open("ab") as log:
            log.write(f"===== start {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [*kraft.die_with_parent_prefix(), *self.command()],
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

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_alive():
                raise ServiceError(f"{self.name} exited with {self.returncode} during start:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise ServiceError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def ready(self) -> bool:
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful: finish in-flight work, flush, write state); SIGKILL after `timeout`."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise ServiceError(f"{self.name} ignored SIGTERM for {timeout}s:\n{self.log_tail()}") from None
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self, timeout: float = 60.0) -> None:
        self.stop()
        self.start(timeout)

    def kill_and_restart(self, timeout: float = 60.0) -> None:
        self.kill()
        self.start(timeout)

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
    ) -> None:
        self.name = name
        self.argv = [str(arg) for arg in argv]
        self._ready = ready
        super().__init__(env or {}, workdir, cwd)

    def command(self) -> list[str]:
        return self.argv

    def ready(self) -> bool:
        return self._ready()

    @contextlib.contextmanager
    def running(self, timeout: float = 60.0) -> Iterator[CommandProcess]:
        """Started and ready inside the block; SIGTERM (then SIGKILL) on the way out."""
        try:
            self.start(timeout)
            yield self
        finally:
            with contextlib.suppress(ServiceError):
                self.stop()
            self.kill()


class AdderProcess(ServiceProcess):
    name = "adder"
    binary = ADDER_BIN

    def __init__(self, env: Mapping[str, str], workdir: Path) -> None:
        super().__init__(env, workdir)
        self.grpc_port = int(self.env["SUMFLOW_GRPC_LISTEN"].rsplit(":", 1)[1])
        self.metrics_port = int(self.env["SUMFLOW_METRICS_LISTEN"].rsplit(":", 1)[1])
        self.target = f"127.0.0.1:{self.grpc_port}"
        self._client: AdderClient | None = None
        self.credentials: grpc.ChannelCredentials | None = None  # TLS for health checks and `client`

    @classmethod
    def for_broker(cls, bootstrap: str, topic: str, workdir: Path, **extra_env: str) -> AdderProcess:
        workdir = Path(workdir)
        env = {
            "SUMFLOW_KAFKA_BOOTSTRAP": bootstrap,
            "SUMFLOW_TOPIC": topic,
            "SUMFLOW_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
            "SUMFLOW_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
            "SUMFLOW_DEDUPE_DIR": str(workdir / "dedupe"),
            "SUMFLOW_GRPC_WORKERS": "16",
            "SUMFLOW_LOG_LEVEL": "INFO",
            **extra_env,
        }
        return cls(env, workdir)

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
        return http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")[1].decode()

    def close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class AccumulatorProcess(ServiceProcess):
    name = "accumulator"
    binary = ACCUMULATOR_BIN

    def __init__(self, env: Mapping[str, str], workdir: Path) -> None:
        super().__init__(env, workdir)
        self.http_port = int(self.env["SUMFLOW_HTTP_LISTEN"].rsplit(":", 1)[1])
        self.base_url = f"http://127.0.0.1:{self.http_port}"

    @classmethod
    def for_broker(
        cls, bootstrap: str, topic: str, workdir: Path, dlq_topic: str | None = None, **extra_env: str
    ) -> AccumulatorProcess:
        workdir = Path(workdir)
        env = {
            "SUMFLOW_KAFKA_BOOTSTRAP": bootstrap,
            "SUMFLOW_TOPIC": topic,
            "SUMFLOW_DLQ_TOPIC": dlq_topic or f"{topic}.dlq",
            "SUMFLOW_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
            "SUMFLOW_STATE_DIR": str(workdir / "state"),
            "SUMFLOW_CONSUMER_GROUP": f"g-{topic}",
            "SUMFLOW_HTTP_THREADS": "4",
            "SUMFLOW_LOG_LEVEL": "INFO",
            **extra_env,
        }
        return cls(env, workdir)

    @property
    def state_dir(self) -> Path:
        return Path(self.env["SUMFLOW_STATE_DIR"])

    def ready(self) -> bool:
        return http_ok(f"{self.base_url}/readyz")

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        return get_json(f"{self.base_url}{path}", timeout=timeout)

    def total(self) -> dict[str, int]:
        status, body = self.get("/api/total")
        if status != 200:
            raise ServiceError(f"GET /api/total -> {status} {body!r}")
        return body

    def wait_applied(self, applied: int, timeout: float = 60.0) -> dict[str, int]:
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
            time.sleep(0.2)
        raise ServiceError(f"applied did not reach {applied} in {timeout}s (last {last}):\n{self.log_tail()}")


@dataclass
class SumflowStack:
    adder: AdderProcess
    accumulator: AccumulatorProcess
    topic: str
    dlq_topic: str

    def stop(self) -> None:
        self.adder.close_client()
        for service in (self.adder, self.accumulator):
            with contextlib.suppress(ServiceError):
                service.stop()
            service.kill()


@contextlib.contextmanager
def sumflow_stack(
    bootstrap: str,
    workdir: Path,
    topic: str | None = None,
    partitions: int = 1,
    replication: int = 1,
    adder_env: Mapping[str, str] | None = None,
    accumulator_env: Mapping[str, str] | None = None,
) -> Iterator[SumflowStack]:
    """Create fresh topics (unless `topic` is given), start both services, stop them on exit."""
    topic = topic or unique_topic("sum")
    dlq = f"{topic}.dlq"
    kraft.create_topics(bootstrap, [topic], partitions, replication)
    kraft.create_topics(bootstrap, [dlq], 1, replication)
    workdir = Path(workdir)
    adder = AdderProcess.for_broker(bootstrap, topic, workdir / "adder", **dict(adder_env or {}))
    accumulator = AccumulatorProcess.for_broker(
        bootstrap, topic, workdir / "accumulator", dlq_topic=dlq, **dict(accumulator_env or {})
    )
    stack = SumflowStack(adder, accumulator, topic, dlq)
    try:
        accumulator.start()
        adder.start()
        yield stack
    finally:
        stack.stop()


__all__ = [
    "AccumulatorProcess",
    "AdderProcess",
    "CommandProcess",
    "ServiceError",
    "SumflowStack",
    "sumflow_stack",
]
