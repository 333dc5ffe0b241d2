"""Malformed HTTP on raw sockets to both services' HTTP ports: every error is JSON, none is a 5xx.

waitress answers some requests itself, before the application sees them (a malformed request
line or header, a body or header block over the limit, a framing header it does not implement);
those answers are JSON like the application's, and a bad Transfer-Encoding is a 400. A malformed
OpenMetrics version in Accept on /metrics gets the text format, never a 500.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.kafka import unique_topic
from harness.processes import AccumulatorProcess, AdderProcess

MAX_HEADER_BYTES = 16 * 1024  # sumflow.entrypoints.http_server
MAX_BODY_BYTES = 16 * 1024

# expected None: framing waitress parses unambiguously (chunked wins over Content-Length, as RFC 9112
# allows): the application answers it, and whatever it answers is no 5xx and, if an error, JSON.
HOSTILE = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /api/total HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n", 400),
    (b"GET /api/total HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\n\r\n", 431),
    (b"POST /api/total HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(MAX_BODY_BYTES + 1).encode() + b"\r\n\r\n", 413),
    (b"POST /api/total HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /api/total HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400),
    (b"POST /api/total HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"POST /api/total HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", None),
    (b"POST /api/total HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST /api/total HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    (b"POST /api/total HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", None),
    (b"GET /api/total HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", None),
]


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before reading it all
            sock.sendall(raw)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


@pytest.fixture(scope="module")
def ports(kafka_broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    tmp: Path = tmp_path_factory.mktemp("http-framing")
    topic = kafka_broker.create_topic(unique_topic("framing"))
    dlq = kafka_broker.create_topic(unique_topic("framing-dlq"))
    acc = AccumulatorProcess.for_broker(kafka_broker.bootstrap, topic, tmp / "acc", dlq_topic=dlq)
    adder = AdderProcess.for_broker(kafka_broker.bootstrap, topic, tmp / "adder", SUMFLOW_LOG_LEVEL="WARNING")
    acc.start(wait=False)
    adder.start()
    acc.wait_listening()
    yield {"accumulator": acc.http_port, "adder-metrics": adder.metrics_port}
    assert acc.is_alive() and adder.is_alive()
    acc.kill()
    adder.kill()


@pytest.mark.parametrize("service", ["accumulator", "adder-metrics"])
@pytest.mark.parametrize(("raw", "expected"), HOSTILE, ids=[f"case{i}" for i in range(len(HOSTILE))])
def test_malformed_requests_get_json_client_errors(ports, service, raw, expected):
    status, headers, body = exchange(ports[service], raw)
    assert status < 500 and status == (expected or status), (status, body)
    if status >= 400:
        assert headers["content-type"] == "application/json", headers
        doc = json.loads(body)
        assert doc["status"] == status and doc["message"], doc


@pytest.mark.parametrize("service", ["accumulator", "adder-metrics"])
@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text; version=abc",
        "application/openmetrics-text; version=",
        "application/openmetrics-text; version=1.0.0.0.x; charset=utf-8",
        "application/openmetrics-text; version=0.0.1",
        "application/openmetrics-text;;;version",
        "*/*; q=x",
    ],
)
def test_malformed_accept_on_metrics_never_fails(ports, service, accept):
    raw = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n".encode()
    status, headers, body = exchange(ports[service], raw)
    assert status == 200, (status, body[:300])
    assert b"# HELP" in body and headers["content-type"].startswith(("text/plain", "application/openmetrics-text"))
