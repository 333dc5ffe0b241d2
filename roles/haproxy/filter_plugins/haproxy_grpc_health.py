"""haproxy_grpc_health_check: the tcp-check lines of a gRPC health check (HAProxy 2.6).

HAProxy 2.6 cannot send a gRPC request with `http-check`: the body of `http-check send` is a C string
(`body "\\x00..."` is refused as empty, `body-lf %[bin(...)]` sends no body), and every gRPC message
starts with a NUL byte (the compressed flag). So the check speaks HTTP/2 itself over the TLS connection
that `check-alpn h2` opens: the client preface, an empty SETTINGS frame, a HEADERS frame for
POST /grpc.health.v1.Health/Check (HPACK literals, no Huffman, no dynamic table) and one DATA frame
holding the length-prefixed HealthCheckRequest{service}, ending the stream. The adder answers with a
HealthCheckResponse whose field 1 is the status: bytes 00 00000002 08 01 for SERVING.
"""

from __future__ import annotations

import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PATH = "/grpc.health.v1.Health/Check"
# The answer's gRPC message for SERVING: not compressed, 2 bytes long, field 1 (varint) = 1.
SERVING_HEX = "00000000020801"
# Any answer's message up to the status value (a check waits for it, then judges the next byte).
ANSWER_HEX = "000000000208"

_FRAME_DATA, _FRAME_HEADERS, _FRAME_SETTINGS = 0x0, 0x1, 0x4
_END_STREAM, _END_HEADERS = 0x1, 0x4
# HPACK static table (RFC 7541 appendix A): indexes used below.
_METHOD_POST, _SCHEME_HTTPS, _AUTHORITY, _PATH, _CONTENT_TYPE = 3, 7, 1, 4, 31


def _integer(value: int, prefix_bits: int, first_byte: int) -> bytes:
    """An HPACK integer (RFC 7541 5.1) with `prefix_bits` bits in the first byte."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    out = bytearray([first_byte | limit])
    value -= limit
    while value >= 128:
        out.append((value % 128) + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode("ascii")
    return _integer(len(data), 7, 0x00) + data  # H bit 0: no Huffman coding


def _literal(name: int | str, value: str) -> bytes:
    """A literal header field without indexing (RFC 7541 6.2.2): indexed name or new name."""
    if isinstance(name, int):
        return _integer(name, 4, 0x00) + _string(value)
    return b"\x00" + _string(name) + _string(value)


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def health_check_request(service: str) -> bytes:
    """The gRPC message (5-byte prefix + protobuf) of HealthCheckRequest{service}."""
    name = service.encode("utf-8")
    message = (b"\x0a" + _varint(len(name)) + name) if name else b""
    return b"\x00" + struct.pack(">I", len(message)) + message


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def haproxy_grpc_health_request(service: str, authority: str = "sumflow-balancer") -> str:
    """Hex of the whole exchange HAProxy sends: preface, SETTINGS, HEADERS, DATA (stream 1)."""
    headers = (
        _integer(_METHOD_POST, 7, 0x80)
        + _integer(_SCHEME_HTTPS, 7, 0x80)
        + _literal(_PATH, PATH)
        + _literal(_AUTHORITY, authority)
        + _literal(_CONTENT_TYPE, "application/grpc")
        + _literal("te", "trailers")
    )
    wire = (
        PREFACE
        + _frame(_FRAME_SETTINGS, 0, 0, b"")
        + _frame(_FRAME_HEADERS, _END_HEADERS, 1, headers)
        + _frame(_FRAME_DATA, _END_STREAM, 1, health_check_request(service))
    )
    return wire.hex()


def haproxy_grpc_health_check(service: str) -> list[str]:
    """The backend lines: send the request, wait for an answer's status, pass only on SERVING."""
    return [
        "option tcp-check",
        f"tcp-check send-binary {haproxy_grpc_health_request(service)}",
        f'tcp-check expect comment "a\\ gRPC\\ health\\ answer" binary {ANSWER_HEX}',
        f'tcp-check expect min-recv 0 comment "SERVING" binary {SERVING_HEX}',
    ]


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"haproxy_grpc_health_check": haproxy_grpc_health_check}
