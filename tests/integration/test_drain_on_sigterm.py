"""SIGTERM drains before it stops: real `sumflow-adder` / `sumflow-accumulator` processes, real broker.

The adder turns its gRPC health NOT_SERVING (service "" and sumflow.v1.SumService), keeps answering
old and new calls for SUMFLOW_DRAIN_SECONDS, then lets in-flight calls finish and exits 0: a client
sees only OK or UNAVAILABLE. The accumulator answers /readyz 503 "shutting down" while its HTTP API
still serves, then exits 0.
"""

from __future__ import annotations

import signal
import threading
import uuid
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.broker import KafkaBroker
from tests.support.grpc_client import AdderClient, channel, health_status
from tests.support.http_client import get_json
from tests.support.services import AccumulatorProcess, AdderProcess

SERVICE = "sumflow.v1.SumService"
DRAIN_SECONDS = "3"
THREADS = 4
MAX_CALLS_PER_THREAD = 3000  # bounds the stream; the threads stop once the adder has exited


class CallStream:
    """THREADS threads sending single-attempt AddNumbers calls (fresh id each) until told to stop."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.codes: Counter[str] = Counter()
        self.ok_after_sigterm = 0
        self.sigterm_sent = threading.Event()
        self.first_ok = threading.Event()
        self.stop = threading.Event()
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
                if self.stop.is_set():
                    return
                code = client.add_status(str(uuid.uuid4()), 20, 22, timeout=20)
                with self._lock:
                    self.codes[code.name] += 1
                    if code == grpc.StatusCode.OK and self.sigterm_sent.is_set():
                        self.ok_after_sigterm += 1
                if code == grpc.StatusCode.OK:
                    self.first_ok.set()


def _watch_until_not_serving(target: str, seen: list[str], not_serving: threading.Event) -> None:
    """Health.Watch on SumService: record each status; on NOT_SERVING probe a NEW connection, then stop."""
    with channel(target) as ch:
        stream = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=120)
        try:
            for reply in stream:
                seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
                if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    # The port still accepts connections: a new one is told NOT_SERVING and served.
                    seen.append(f"new connection: {health_status(target, '')} / {health_status(target, SERVICE)}")
                    with AdderClient(target) as fresh:
                        seen.append(f"new call: {fresh.add_status(str(uuid.uuid4()), 1, 2, timeout=20).name}")
                    not_serving.set()
                    stream.cancel()
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
    stream = CallStream(adder.target)
    seen: list[str] = []
    not_serving = threading.Event()
    watcher = threading.Thread(target=_watch_until_not_serving, args=(adder.target, seen, not_serving), daemon=True)
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
    finally:
        stream.join()
        adder.kill()

    assert code == 0, adder.log_tail()
    assert not_serving.is_set(), (seen, adder.log_tail())
    assert seen == [
        "SERVING",
        "NOT_SERVING",
        "new connection: NOT_SERVING / NOT_SERVING",
        "new call: OK",
    ], adder.log_tail()
    assert after_exit == "UNREACHABLE"
    assert set(stream.codes) <= {"OK", "UNAVAILABLE"}, stream.codes
    assert stream.ok_after_sigterm > 0, stream.codes
    print(f"processes={processes} calls {dict(stream.codes)}, OK after SIGTERM {stream.ok_after_sigterm}")


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
            except OSError:
                observed.append("refused")
                break
            entry = f"{status} {body.get('reason')} total {total_status}"
            if not observed or observed[-1] != entry:
                observed.append(entry)
        code = acc.stop(timeout=60)
    finally:
        acc.kill()

    assert code == 0, acc.log_tail()
    # Ready until the signal is handled, then not ready while the API still answers, then closed.
    assert observed[-2:] == ["503 shutting down total 200", "refused"], observed
    assert set(observed[:-2]) <= {"200 ready total 200"}, observed
