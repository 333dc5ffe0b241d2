"""The deployment probe's AddNumbers client retries what docs/operations.md tells clients to retry.

A real gRPC server on 127.0.0.1 ends the first attempt of each request id with a chosen status and
answers the next one: the probe's `_add` must retry UNAVAILABLE, DEADLINE_EXCEEDED and CANCELLED with
the same request (a call that reaches a stopping adder can end CANCELLED) and give up at once on any
other status. The adder itself is exercised by the Molecule stream check; here the probe's client
rule is the thing under test.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from sumflow.v1 import sum_pb2, sum_pb2_grpc
from tests.fixtures.file_module import load_file_module

PROBE = Path(__file__).resolve().parents[2] / "molecule/default/files/deployment_probe.py"


probe = load_file_module(PROBE)


class FirstAttemptFails(sum_pb2_grpc.SumServiceServicer):
    """Ends the first attempt of each request id with `status`, answers every later one."""

    def __init__(self, status: grpc.StatusCode) -> None:
        self.status = status
        self.attempts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def AddNumbers(
        self, request: sum_pb2.AddNumbersRequest, context: grpc.ServicerContext
    ) -> sum_pb2.AddNumbersResponse:
        with self._lock:
            self.attempts[request.request_id] += 1
            first = self.attempts[request.request_id] == 1
        if first:
            context.abort(self.status, f"first attempt ends {self.status.name}")
        return sum_pb2.AddNumbersResponse(
            result=request.first_number + request.second_number, duplicate=True, request_id=request.request_id
        )


@pytest.fixture
def server() -> Iterator[tuple[grpc.Server, int]]:
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    yield grpc_server, port
    grpc_server.stop(None)


def _serve(server: tuple[grpc.Server, int], status: grpc.StatusCode) -> tuple[FirstAttemptFails, str]:
    grpc_server, port = server
    servicer = FirstAttemptFails(status)
    sum_pb2_grpc.add_SumServiceServicer_to_server(servicer, grpc_server)
    grpc_server.start()
    return servicer, f"127.0.0.1:{port}"


@pytest.mark.parametrize(
    "status", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED]
)
def test_a_transient_status_is_retried_with_the_same_request(
    server: tuple[grpc.Server, int], status: grpc.StatusCode
) -> None:
    servicer, address = _serve(server, status)
    request = probe._request()
    with grpc.insecure_channel(address) as channel:
        reply, retries = probe._add(sum_pb2_grpc.SumServiceStub(channel), request, time.monotonic() + 30, pause=0.01)
    assert retries == 1
    assert reply.result == request.first_number + request.second_number
    assert servicer.attempts == Counter({request.request_id: 2})


@pytest.mark.parametrize("status", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL])
def test_any_other_status_fails_the_probe_at_once(server: tuple[grpc.Server, int], status: grpc.StatusCode) -> None:
    servicer, address = _serve(server, status)
    request = probe._request()
    with grpc.insecure_channel(address) as channel, pytest.raises(probe.ProbeError, match=status.name):
        probe._add(sum_pb2_grpc.SumServiceStub(channel), request, time.monotonic() + 30, pause=0.01)
    assert servicer.attempts == Counter({request.request_id: 1})


def test_a_stream_limited_to_unavailable_fails_on_cancelled(server: tuple[grpc.Server, int]) -> None:
    """`stream --retry UNAVAILABLE` (the rolling-release proof): a CANCELLED call is a failure."""
    servicer, address = _serve(server, grpc.StatusCode.CANCELLED)
    request = probe._request()
    retried = frozenset({grpc.StatusCode.UNAVAILABLE})
    with grpc.insecure_channel(address) as channel, pytest.raises(probe.ProbeError, match="CANCELLED"):
        probe._add(sum_pb2_grpc.SumServiceStub(channel), request, time.monotonic() + 30, pause=0.01, retried=retried)
    assert servicer.attempts == Counter({request.request_id: 1})


def test_each_retry_is_counted_by_its_status(server: tuple[grpc.Server, int]) -> None:
    _, address = _serve(server, grpc.StatusCode.UNAVAILABLE)
    seen: Counter[str] = Counter()
    with grpc.insecure_channel(address) as channel:
        stub = sum_pb2_grpc.SumServiceStub(channel)
        for _ in range(3):
            probe._add(stub, probe._request(), time.monotonic() + 30, pause=0.01, seen=seen)
    assert seen == Counter({"UNAVAILABLE": 3})


def test_the_stream_command_names_an_unknown_status(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["stream", "--adder=127.0.0.1:1", "--accumulator=http://h:1", "--until-file=/x", "--retry=NOPE"]
    with pytest.raises(SystemExit) as exited:
        probe.main(args)
    assert exited.value.code == 2
    assert "not a gRPC status: NOPE" in capsys.readouterr().err
