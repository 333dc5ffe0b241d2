"""End-to-end freshness probe: time from a gRPC reply to GET /api/total including that call.

Probe calls add PROBE_UNIT (10**12) each while the background load adds 3 per call, so
`total // PROBE_UNIT` counts the probes applied; probes run one at a time, so probe k is visible
exactly when that count reaches k. The probe polls /api/total every `poll_s` seconds.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid

import grpc

from sumflow.v1 import sum_pb2, sum_pb2_grpc

PROBE_UNIT = 10**12


class FreshnessProbe(threading.Thread):
    def __init__(
        self, grpc_target: str, http_port: int, *, interval_s: float = 0.1, poll_s: float = 0.002, budget_s: float
    ) -> None:
        super().__init__(daemon=True)
        self.grpc_target = grpc_target
        self.http_port = http_port
        self.interval_s = interval_s
        self.poll_s = poll_s
        self.budget_s = budget_s
        self.samples_ms: list[float] = []
        self.sent = 0  # probe calls answered OK: each adds PROBE_UNIT to the total
        self.timeouts = 0
        self.error: BaseException | None = None

    def _probes_applied(self, conn: http.client.HTTPConnection) -> int:
        conn.request("GET", "/api/total")
        body = conn.getresponse().read()
        return json.loads(body)["total"] // PROBE_UNIT

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the caller
            self.error = exc

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
        with grpc.insecure_channel(self.grpc_target) as channel:
            stub = sum_pb2_grpc.SumServiceStub(channel)
            base = self._probes_applied(conn)
            end = time.monotonic() + self.budget_s
            while time.monotonic() < end:
                tick = time.monotonic()
                stub.AddNumbers(
                    sum_pb2.AddNumbersRequest(request_id=str(uuid.uuid4()), first_number=PROBE_UNIT, second_number=0),
                    timeout=10,
                )
                replied = time.monotonic()
                self.sent += 1
                deadline = replied + 10
                while self._probes_applied(conn) - base < self.sent:
                    if time.monotonic() > deadline:
                        self.timeouts += 1
                        return
                    time.sleep(self.poll_s)
                self.samples_ms.append((time.monotonic() - replied) * 1000)
                time.sleep(max(0.0, self.interval_s - (time.monotonic() - tick)))
        conn.close()
