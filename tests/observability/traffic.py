"""Bounded traffic through the real pipeline that makes every series of the dashboards exist:
new calls, duplicates (same id, same numbers), conflicts (same id, other numbers), invalid ids,
and one record on the topic that is not a valid event (-> DLQ)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import grpc

from sumflow.v1 import sum_pb2, sum_pb2_grpc


@dataclass
class TrafficReport:
    codes: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    traced_request_id: str = ""

    def count(self, code: grpc.StatusCode) -> None:
        self.codes[code.name] = self.codes.get(code.name, 0) + 1
        self.calls += 1


def _call(stub: sum_pb2_grpc.SumServiceStub, report: TrafficReport, request_id: str, a: int, b: int) -> None:
    try:
        stub.AddNumbers(sum_pb2.AddNumbersRequest(request_id=request_id, first_number=a, second_number=b), timeout=10)
        report.count(grpc.StatusCode.OK)
    except grpc.RpcError as err:
        report.count(err.code())


def drive(grpc_target: str, *, seconds: float, max_calls: int, rate_per_second: float) -> TrafficReport:
    """Call AddNumbers at about `rate_per_second` until `seconds` elapsed or `max_calls` were made."""
    report = TrafficReport()
    interval = 1.0 / rate_per_second
    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(grpc_target) as channel:
        stub = sum_pb2_grpc.SumServiceStub(channel)
        report.traced_request_id = str(uuid.uuid4())
        _call(stub, report, report.traced_request_id, 20, 22)
        i = 0
        while time.monotonic() < deadline and report.calls < max_calls:
            started = time.monotonic()
            request_id = str(uuid.uuid4())
            _call(stub, report, request_id, i, 1)
            if i % 5 == 0:
                _call(stub, report, request_id, i, 1)  # a client retry: duplicate
            if i % 7 == 0:
                _call(stub, report, request_id, i, 2)  # same id, other numbers: conflict
            if i % 9 == 0:
                _call(stub, report, "not-a-uuid", i, 1)  # invalid id
            i += 1
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    return report


def produce_invalid_record(bootstrap: str, topic: str) -> None:
    """One record the accumulator cannot decode: it must land in the DLQ, not stop consumption."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, key=b"observability-test", value=b"{not json").get(timeout=30)
    finally:
        producer.close(timeout=10)
