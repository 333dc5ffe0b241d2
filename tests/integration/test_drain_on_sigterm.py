"""SIGTERM drains before it stops: real `sumflow-adder` / `sumflow-accumulator` processes, real broker.

The adder turns its gRPC health NOT_SERVING (service "" and sumflow.v1.SumService), keeps answering
old and new calls for SUMFLOW_DRAIN_SECONDS, then lets in-flight calls finish and exits 0. The call
stream behaves like clients behind a balancer: they keep calling until their health check has seen
NOT_SERVING and BALANCER_CHECK_SECONDS more (the balancer's check interval), and see only OK or
UNAVAILABLE. (Clients that ignore health and call at the very instant the server stops can get
CANCELLED from grpc core, grpc/grpc#41785: a retry with the same id is safe.) The accumulator answers
/readyz 503 "shutting down" while its HTTP API still serves, then exits 0.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.grpc_client import AdderClient, channel, health_status
from harness.http_client import get_json
from harness.kafka import KafkaBroker
from harness.processes import AccumulatorProcess, AdderProcess

SERVICE = "sumflow.v1.SumService"
DRAIN_SECONDS = "5"
BALANCER_CHECK_SECONDS = 1.0  # below the drain: traffic has moved away before the port closes
THREADS = 4
MAX_CALLS_PER_THREAD = 3000  # bounds the stream; the threads stop once the adder has exited


class CallStream:
    """THREADS threads sending single-attempt AddNumbers calls (fresh id each) until the balancer moves away."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.codes: Counter[str] = Counter()
        self.ok_after_sigterm = 0
        self.sigterm_sent = threading.Event()
        self.first_ok = threading.Event()
        self.stop = threading.Event()
        self.samples: list[str] = []  # the first few failures, for the report
        self.moved_away_at: float | None = None  # monotonic time the balancer stops sending here
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(THREADS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not any(t.is_alive() for t in self._threads), "a call thread did not end"

    def _run(self) -> None:
        with AdderClient(self.target) as client:
            for _ in range(MAX_CALLS_PER_THREAD):
                if self.stop.is_set() or (self.moved_away_at is not None and time.monotonic() > self.moved_away_at):
                    return
                try:
                    client.add(str(uuid.uuid4()), 20, 22, timeout=20)
                    code, details = grpc.StatusCode.OK, ""
                except grpc.RpcError as exc:
                    code, details = exc.code(), exc.details() or ""
                if code != grpc.StatusCode.OK and len(self.samples) < 5:
                    self.samples.append(f"{code.name} after SIGTERM={self.sigterm_sent.is_set()}: {details[:120]}")
                with self._lock:
                    self.codes[code.name] += 1
                    if code == grpc.StatusCode.OK and self.sigterm_sent.is_set():
                        self.ok_after_sigterm += 1
                if code == grpc.StatusCode.OK:
                    self.first_ok.set()


def _watch_until_not_serving(target: str, seen: list[str], not_serving: threading.Event, stream: CallStream) -> None:
    """The balancer's health check (Health.Watch on SumService): record each status; on NOT_SERVING
    move the stream away after BALANCER_CHECK_SECONDS and probe a NEW connection, then stop."""
    with channel(target) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=120)
        try:
            for reply in watch:
                seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
                if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    stream.moved_away_at = time.monotonic() + BALANCER_CHECK_SECONDS
                    # The port still accepts connections: a new one is told NOT_SERVING and served.
                    seen.append(f"new connection: {health_status(target, '')} / {health_status(target, SERVICE)}")
                    with AdderClient(target) as fresh:
                        seen.append(f"new call: {fresh.add_status(str(uuid.uuid4()), 1, 2, timeout=20).name}")
                    not_serving.set()
                    watch.cancel()
                    return
        except grpc.RpcError as exc:
            seen.append(f"watch ended: {exc.code().name}")


@pytest.mark.parametrize("processes", ["1", "2"])
def test_adder_sigterm_drains_then_stops_with_only_ok_or_unavailable(
    kafka_broker: KafkaBroker, topic: str, tmp_path: Path, processes: str
) -> None:
    adder = AdderProcess.for_broker(
        kafka_broker.bootstrap,
        topic,
        tmp_path / "adder",
        SUMFLOW_DRAIN_SECONDS=DRAIN_SECONDS,
        SUMFLOW_ADDER_PROCESSES=processes,
    )
    adder.start()
    # Health answers once one worker serves; the supervisor logs "adder serving" with the worker pids
    # once all do.
    serving_line = '"worker_pids"' if processes != "1" else '"adder serving"'
    for _ in range(600):  # bounded: 60 s
        if any(serving_line in line for line in adder.output_lines()):
            break
        time.sleep(0.1)
    stream = CallStream(adder.target)
    seen: list[str] = []
    not_serving = threading.Event()
    watcher = threading.Thread(
        target=_watch_until_not_serving, args=(adder.target, seen, not_serving, stream), daemon=True
    )
    try:
        watcher.start()
        stream.start()
        assert stream.first_ok.wait(60), adder.log_tail()
        assert adder.process is not None
        stream.sigterm_sent.set()
        adder.process.send_signal(signal.SIGTERM)
        watcher.join(60)
        code = adder.stop(timeout=60)  # waits for the exit
        after_exit = health_status(adder.target, SERVICE)
        with AdderClient(adder.target) as late:
            late_call = late.add_status(str(uuid.uuid4()), 1, 2, timeout=10)
    finally:
        stream.join()
        adder.kill()

    print(
        f"processes={processes} calls {dict(stream.codes)}, OK after SIGTERM {stream.ok_after_sigterm}, "
        f"first failures {stream.samples}"
    )
    assert code == 0, adder.log_tail()
    assert not_serving.is_set(), (seen, adder.log_tail())
    assert seen == [
        "SERVING",
        "NOT_SERVING",
        "new connection: NOT_SERVING / NOT_SERVING",
        "new call: OK",
    ], adder.log_tail()
    assert after_exit == "UNREACHABLE"
    assert late_call == grpc.StatusCode.UNAVAILABLE
    assert set(stream.codes) <= {"OK", "UNAVAILABLE"}, stream.codes
    assert stream.ok_after_sigterm > 0, stream.codes


def test_accumulator_sigterm_answers_not_ready_while_serving_then_exits_0(
    kafka_broker: KafkaBroker, topic: str, tmp_path: Path
) -> None:
    kafka_broker.create_topic(f"{topic}.dlq", partitions=1, replication=1)
    acc = AccumulatorProcess.for_broker(
        kafka_broker.bootstrap, topic, tmp_path / "acc", SUMFLOW_DRAIN_SECONDS=DRAIN_SECONDS
    )
    acc.start()
    assert acc.process is not None
    observed: list[str] = []
    try:
        assert acc.get("/readyz")[0] == 200
        acc.process.send_signal(signal.SIGTERM)
        # Bounded: the drain lasts seconds; every answer is recorded until the port refuses.
        for _ in range(100_000):
            try:
                status, body = get_json(f"{acc.base_url}/readyz", timeout=5)
                total_status = get_json(f"{acc.base_url}/api/total", timeout=5)[0]
            except OSError as exc:  # anything but a closed port fails the sequence check below
                # Refused, or reset: a connection the kernel queued just as the listener closed is reset,
                # after seconds of answering 503 (a client that checks readiness has left by then).
                closed = isinstance(getattr(exc, "reason", exc), ConnectionRefusedError | ConnectionResetError)
                observed.append("closed" if closed else f"{type(exc).__name__}: {exc}")
                break
            entry = f"{status} {body.get('reason')} total {total_status}"
            if not observed or observed[-1] != entry:
                observed.append(entry)
        code = acc.process.wait(60)  # no second SIGTERM: the first one stops it
    finally:
        acc.kill()

    assert code == 0, (observed, acc.log_tail())
    # Ready until the signal is handled, then not ready while the API still answers, then closed.
    assert observed[-2:] == ["503 shutting down total 200", "closed"], observed
    assert set(observed[:-2]) <= {"200 ready total 200"}, observed
