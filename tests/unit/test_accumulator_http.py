"""The accumulator's HTTP API served by a real waitress server on a free port.

Every response is checked against the OpenAPI document it claims to follow.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

import orjson
import pytest
import waitress
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry

from sumflow.domain.events import SummationEvent
from sumflow.domain.ledger import LedgerEntry, LedgerState
from sumflow.entrypoints.accumulator_app import create_app, instrument, parse_limit
from sumflow.entrypoints.openapi import openapi_document
from sumflow.observability.metrics import AccumulatorMetrics
from sumflow.service_layer.accumulator_status import AccumulatorStatus, make_snapshot

DOC = openapi_document()
BIG = 2**66 + 5


def rows(n: int) -> list[LedgerEntry]:
    return [
        LedgerEntry(
            n - i,
            SummationEvent(f"00000000-0000-4000-8000-{n - i:012d}", n - i, 2, n - i + 2, 1_700_000, 0, n - i - 1),
            1.7e9,
        )
        for i in range(n)
    ]


class Server:
    def __init__(self) -> None:
        self.status = AccumulatorStatus()
        self.status.snapshot = make_snapshot(LedgerState(BIG, 42, {0: 42}))
        self.registry = CollectorRegistry()
        self.metrics = AccumulatorMetrics(self.registry)
        self.fail_reads = False

        def recent(limit: int) -> list[LedgerEntry]:
            if self.fail_reads:
                import sqlite3

                raise sqlite3.OperationalError("disk I/O error")
            return rows(limit)[:30]

        app = instrument(create_app(self.status, recent, self.registry), self.metrics)
        self.server = waitress.create_server(app, host="127.0.0.1", port=0, threads=2)
        self.port = self.server.effective_port
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def request(self, method: str, path: str, headers: dict[str, str] | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", ""), resp.read(), dict(resp.getheaders())
        finally:
            conn.close()

    def close(self) -> None:
        self.server.close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def server():
    srv = Server()
    yield srv
    srv.close()


def conforms(body: bytes, schema_name: str) -> None:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": DOC["components"]}
    OAS30Validator(schema).validate(json.loads(body))


def test_openapi_document_is_valid_openapi_3():
    validate(DOC)
    assert set(DOC["paths"]) == {
        "/api/total",
        "/api/summations",
        "/api/final",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/openapi.json",
    }


def test_total_is_exact_json_even_beyond_int64(server):
    status, ctype, body, _ = server.request("GET", "/api/total")
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body) == {"total": BIG, "applied": 42}
    conforms(body, "Total")


def test_final_is_the_bare_total(server):
    status, ctype, body, _ = server.request("GET", "/api/final")
    assert status == 200 and ctype.startswith("text/plain")
    assert body == str(BIG).encode()


@pytest.mark.parametrize(("query", "count"), [("", 20), ("?limit=1", 1), ("?limit=25", 25), ("?limit=1000", 30)])
def test_summations_newest_first(server, query, count):
    status, ctype, body, _ = server.request("GET", f"/api/summations{query}")
    assert (status, ctype) == (200, "application/json")
    conforms(body, "SummationList")
    items = orjson.loads(body)["summations"]
    assert len(items) == count
    offsets = [item["offset"] for item in items]
    assert offsets == sorted(offsets, reverse=True)
    assert items[0]["applied_at"] == "2023-11-14T22:13:20.000Z"


@pytest.mark.parametrize("bad", ["0", "1001", "-1", "abc", "", "1e3", "+5", "%20%205", "99999", "%C3%A9", "1.0"])
def test_bad_limit_is_a_400_json_error(server, bad):
    status, ctype, body, _ = server.request("GET", f"/api/summations?limit={bad}")
    assert (status, ctype) == (400, "application/json")
    conforms(body, "Error")
    assert "limit must be an integer between 1 and 1000" in orjson.loads(body)["message"]


def test_parse_limit_accepts_only_plain_decimal():
    assert parse_limit(None) == 20
    assert parse_limit("0007") == 7
    for bad in ("٣", "1_0", " 5", "5 "):
        with pytest.raises(ValueError, match="limit"):
            parse_limit(bad)


def test_unreadable_state_is_a_503_json_error(server):
    server.fail_reads = True
    try:
        status, ctype, body, _ = server.request("GET", "/api/summations")
    finally:
        server.fail_reads = False
    assert (status, ctype) == (503, "application/json")
    conforms(body, "Error")


def test_unknown_path_is_404_json(server):
    status, ctype, body, _ = server.request("GET", "/nope/%FF%FE")
    assert (status, ctype) == (404, "application/json")
    conforms(body, "Error")


def test_wrong_method_is_405_json_with_allow(server):
    status, ctype, body, headers = server.request("POST", "/api/total")
    assert (status, ctype) == (405, "application/json")
    conforms(body, "Error")
    assert "GET" in headers["Allow"]
    assert server.request("DELETE", "/healthz")[0] == 405


def test_health_and_readiness(server):
    status, _, body, _ = server.request("GET", "/healthz")
    assert status == 200
    conforms(body, "Health")
    server.status.state_loaded = True
    status, _, body, _ = server.request("GET", "/readyz")
    assert status == 503
    conforms(body, "Readiness")
    assert orjson.loads(body)["reason"] == "no partitions of the topic assigned yet"
    server.status.partitions_assigned = True
    status, _, body, _ = server.request("GET", "/readyz")
    assert (status, orjson.loads(body)) == (200, {"status": "ready", "reason": "ready"})


def test_metrics_plain_and_openmetrics_with_exemplars(server):
    server.metrics.end_to_end_latency.observe(0.02, exemplar={"trace_id": "ab" * 16})
    server.request("GET", "/api/total")
    status, ctype, body, _ = server.request("GET", "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    text = body.decode()
    assert 'sumflow_http_requests_total{method="GET",route="/api/total",status="200"}' in text
    status, ctype, body, _ = server.request("GET", "/metrics", {"Accept": "application/openmetrics-text"})
    assert ctype.startswith("application/openmetrics-text")
    assert f'# {{trace_id="{"ab" * 16}"}} 0.02' in body.decode()


def test_requests_are_counted_by_route_and_status(server):
    before = server.registry.get_sample_value(
        "sumflow_http_requests_total", {"method": "GET", "route": "/api/summations", "status": "400"}
    )
    server.request("GET", "/api/summations?limit=x")
    after = server.registry.get_sample_value(
        "sumflow_http_requests_total", {"method": "GET", "route": "/api/summations", "status": "400"}
    )
    assert after == (before or 0) + 1
    server.request("GET", "/definitely/unknown")
    server.request("PUT", "/api/final")
    assert server.registry.get_sample_value(
        "sumflow_http_requests_total", {"method": "PUT", "route": "unmatched", "status": "405"}
    )
    assert server.registry.get_sample_value(
        "sumflow_http_requests_total", {"method": "GET", "route": "unmatched", "status": "404"}
    )


def test_openapi_document_is_served(server):
    status, ctype, body, _ = server.request("GET", "/api/openapi.json")
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body) == json.loads(json.dumps(DOC))


def test_head_request_has_no_body(server):
    status, _, body, _ = server.request("HEAD", "/api/total")
    assert status == 200 and body == b""


def test_server_keeps_serving_after_garbage(server):
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\x00\xff GARBAGE /\x01 HTTP/9\r\n\r\n")
        sock.recv(1024)
    time.sleep(0.05)
    assert server.request("GET", "/healthz")[0] == 200
