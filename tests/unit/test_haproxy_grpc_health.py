"""roles/haproxy's haproxy_grpc_health_check filter: the tcp-check lines and HTTP/2 bytes of a gRPC health check.

The exchange is checked frame by frame: the client preface, an empty SETTINGS frame, one HEADERS frame
(END_HEADERS) and one DATA frame (END_STREAM) on stream 1 whose gRPC message parses as the real
HealthCheckRequest. HPACK integers follow RFC 7541's own examples. (That the adder's gRPC server
accepts the request and HAProxy judges its answer: tests/deploy/test_grpc_balancer.py.)
"""

from __future__ import annotations

import struct
from pathlib import Path
from types import ModuleType

import pytest
from grpc_health.v1 import health_pb2

from tests.fixtures.file_module import load_file_module

PLUGIN = Path(__file__).resolve().parents[2] / "roles/haproxy/filter_plugins/haproxy_grpc_health.py"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _plugin() -> ModuleType:
    return load_file_module(PLUGIN)


def _frames(wire: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream, payload) of each frame after the preface."""
    assert wire.startswith(PREFACE)
    rest, frames = wire[len(PREFACE) :], []
    while rest:
        length = int.from_bytes(rest[:3], "big")
        kind, flags = rest[3], rest[4]
        stream = struct.unpack(">I", rest[5:9])[0] & 0x7FFFFFFF
        frames.append((kind, flags, stream, rest[9 : 9 + length]))
        rest = rest[9 + length :]
    return frames


@pytest.mark.parametrize("service", ["", "sumflow.v1.SumService", "s" * 300])
def test_the_check_is_settings_headers_then_one_health_request_on_stream_1(service: str) -> None:
    wire = bytes.fromhex(_plugin().haproxy_grpc_health_request(service))
    (settings, headers, data) = _frames(wire)
    assert settings == (0x4, 0, 0, b"")
    assert headers[:3] == (0x1, 0x4, 1)  # HEADERS, END_HEADERS, stream 1
    assert b"/grpc.health.v1.Health/Check" in headers[3] and b"application/grpc" in headers[3]
    kind, flags, stream, message = data
    assert (kind, flags, stream) == (0x0, 0x1, 1)  # DATA, END_STREAM
    assert message[0] == 0 and int.from_bytes(message[1:5], "big") == len(message) - 5
    assert health_pb2.HealthCheckRequest.FromString(message[5:]).service == service


def test_the_check_sends_the_request_then_passes_only_on_the_serving_message() -> None:
    plugin = _plugin()
    lines = plugin.haproxy_grpc_health_check("sumflow.v1.SumService")
    assert lines[0] == "option tcp-check"
    assert lines[1] == "tcp-check send-binary " + plugin.haproxy_grpc_health_request("sumflow.v1.SumService")
    assert lines[2].endswith(f"binary {plugin.ANSWER_HEX}") and lines[3].endswith(f"binary {plugin.SERVING_HEX}")
    assert "min-recv 0" in lines[3]  # judged on the answer already read: NOT_SERVING fails at once
    serving = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING).SerializeToString()
    not_serving = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING).SerializeToString()
    framed = b"\x00" + struct.pack(">I", len(serving)) + serving
    assert framed.hex() == plugin.SERVING_HEX and framed.hex().startswith(plugin.ANSWER_HEX)
    other = b"\x00" + struct.pack(">I", len(not_serving)) + not_serving
    assert other.hex().startswith(plugin.ANSWER_HEX) and plugin.SERVING_HEX not in other.hex()


@pytest.mark.parametrize(
    ("value", "prefix", "encoded"),
    [(10, 5, "0a"), (1337, 5, "1f9a0a"), (42, 8, "2a")],  # RFC 7541 C.1.1 - C.1.3
)
def test_hpack_integers_follow_rfc_7541(value: int, prefix: int, encoded: str) -> None:
    assert _plugin()._integer(value, prefix, 0).hex() == encoded
