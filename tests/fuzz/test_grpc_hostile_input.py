"""Hostile input to the real adder process: hypothesis over ids and numbers, empty and oversized
messages, undecodable payloads, and garbage bytes on raw TCP and HTTP/2 connections.

Only the documented status codes may come back, each for its documented reason, and the adder
keeps serving: a valid call succeeds after every attack.
"""

from __future__ import annotations

import random
import re
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness.kafka import unique_topic
from harness.processes import AdderProcess
from sumflow.v1 import sum_pb2, sum_pb2_grpc

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_RECEIVE = 64 * 1024  # the adder's grpc.max_receive_message_length
METHOD = "/sumflow.v1.SumService/AddNumbers"
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
# The contract: 32 hex digits, hyphens allowed (any case), at most 36 characters.
UUID_FORM = re.compile(r"[0-9a-fA-F]{32}")
FUZZ_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


def is_uuid(text: str) -> bool:
    return len(text) <= 36 and UUID_FORM.fullmatch(text.replace("-", "")) is not None


@pytest.fixture(scope="module")
def adder(kafka_broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdderProcess]:
    topic = kafka_broker.create_topic(unique_topic("fuzz"), partitions=1)
    tmp: Path = tmp_path_factory.mktemp("fuzz-adder")
    proc = AdderProcess.for_broker(kafka_broker.bootstrap, topic, tmp, SUMFLOW_LOG_LEVEL="WARNING")
    proc.start()
    yield proc
    assert proc.is_alive(), proc.log_tail()
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def channel(adder: AdderProcess) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(adder.target, options=[("grpc.max_send_message_length", 16 << 20)])
    yield ch
    ch.close()


def call(channel: grpc.Channel, request_id: str, first: int = 1, second: int = 2):
    """(code, reply or None, details)."""
    stub = sum_pb2_grpc.SumServiceStub(channel)
    request = sum_pb2.AddNumbersRequest(request_id=request_id, first_number=first, second_number=second)
    try:
        return grpc.StatusCode.OK, stub.AddNumbers(request, timeout=15), ""
    except grpc.RpcError as err:
        return err.code(), None, err.details()


def assert_still_serving(channel: grpc.Channel) -> None:
    rid = str(uuid.uuid4())
    code, reply, details = call(channel, rid, 40, 2)
    assert code is grpc.StatusCode.OK, (code, details)
    assert (reply.request_id, reply.result, reply.duplicate) == (rid, 42, False)


class Oracle:
    """What the adder must answer, from the ids it has already accepted in this module."""

    def __init__(self) -> None:
        self.accepted: dict[str, tuple[int, int]] = {}

    def check(self, request_id: str, first: int, second: int, code, reply, details: str) -> None:
        assert code in DOCUMENTED, (request_id, first, second, code, details)
        assert code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), details  # Kafka is up
        size = len(request_id.encode()) + 30
        if size > MAX_RECEIVE:
            assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
            return
        if not is_uuid(request_id):
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (request_id, code, details)
            return
        canonical = str(uuid.UUID(hex=request_id.replace("-", "")))
        if not INT64_MIN <= first + second <= INT64_MAX:
            assert code is grpc.StatusCode.OUT_OF_RANGE, (first, second, code, details)
            return
        earlier = self.accepted.get(canonical)
        if earlier is not None and earlier != (first, second):
            assert code is grpc.StatusCode.ALREADY_EXISTS, (canonical, earlier, first, second, code)
            return
        assert code is grpc.StatusCode.OK, (request_id, first, second, code, details)
        assert reply.request_id == canonical and reply.result == first + second
        assert reply.duplicate == (earlier is not None)
        self.accepted[canonical] = (first, second)


ORACLE = Oracle()
extreme_ints = st.one_of(
    st.integers(INT64_MIN, INT64_MAX),
    st.sampled_from([0, 1, -1, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1, 2**62, -(2**62)]),
)
uuid_texts = st.uuids().flatmap(
    lambda u: st.sampled_from([str(u), str(u).upper(), u.hex, u.hex.upper(), str(u).title()])
)
ids = st.one_of(
    uuid_texts,
    uuid_texts.map(lambda s: s[:-1]),  # one digit short
    uuid_texts.map(lambda s: " " + s),
    st.text(max_size=60),  # random unicode
    st.text(alphabet="0123456789abcdefABCDEF-_+{}:٣", min_size=30, max_size=40),  # near-UUIDs
    st.text(min_size=1000, max_size=5000),  # huge but under the receive limit
)


@FUZZ_SETTINGS
@given(request_id=ids, first=extreme_ints, second=extreme_ints)
@example(request_id="", first=0, second=0)  # an empty message
@example(request_id="1_111111111111111111111111111111", first=1, second=1)  # int() would accept it
@example(request_id="٣" * 32, first=1, second=1)  # Unicode digits: not a UUID either
def test_random_and_extreme_requests_get_documented_answers(channel, request_id, first, second):
    code, reply, details = call(channel, request_id, first, second)
    ORACLE.check(request_id, first, second, code, reply, details)


@FUZZ_SETTINGS
@given(data=st.data())
def test_repeated_ids_with_same_or_other_numbers(channel, data):
    rid = data.draw(uuid_texts)
    first, second = data.draw(extreme_ints), data.draw(extreme_ints)
    for _ in range(data.draw(st.integers(1, 3))):
        if data.draw(st.booleans()):
            first = data.draw(extreme_ints)  # a conflicting repeat
        code, reply, details = call(channel, rid, first, second)
        ORACLE.check(rid, first, second, code, reply, details)


def test_empty_and_oversized_messages(channel):
    stub = sum_pb2_grpc.SumServiceStub(channel)
    with pytest.raises(grpc.RpcError) as empty:
        stub.AddNumbers(sum_pb2.AddNumbersRequest(), timeout=15)
    assert empty.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    for size in (MAX_RECEIVE + 1, 1 << 20, 8 << 20):
        code, _, details = call(channel, "a" * size)
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, (size, code, details)
    assert_still_serving(channel)


@FUZZ_SETTINGS
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        st.sampled_from(
            [
                b"\x0a\x04\xff\xfe\xfd\xfc",  # request_id that is not UTF-8
                b"\x0a\xff\xff\xff\xff\x0f",  # length beyond the message
                b"\x10",  # a truncated varint
                b"\x12\x00",  # field 2 with the wrong wire type
                b"\xff" * 64,
            ]
        ),
    )
)
def test_undecodable_payloads_are_invalid_argument(channel, payload):
    """Raw bytes as the request message: a parse error is the client's fault, never INTERNAL."""
    raw = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    try:
        raw(payload, timeout=15)
        code, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as err:
        code, details = err.code(), err.details()
    assert code in DOCUMENTED, (payload, code, details)
    if code is grpc.StatusCode.OK:  # bytes that happen to parse: then the id was a valid UUID
        request = sum_pb2.AddNumbersRequest.FromString(payload)
        assert is_uuid(request.request_id)


def varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # two's complement, as protobuf encodes a negative int64
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, wire_type: int, payload: bytes) -> bytes:
    return varint(number << 3 | wire_type) + payload


@pytest.mark.parametrize(
    ("number", "wire_type", "payload"),
    [
        (2, 2, b"\x01\x07"),  # first_number as a length-delimited field
        (3, 2, b"\x00"),  # second_number as an empty byte string
        (2, 1, b"\x07" + b"\x00" * 7),  # first_number as a fixed64
        (3, 5, b"\x07\x00\x00\x00"),  # second_number as a fixed32
        (1, 0, b"\x05"),  # request_id as a varint
    ],
)
def test_known_field_with_wrong_wire_type_is_invalid_argument(channel, number, wire_type, payload):
    """protobuf keeps such a field as unknown and reads the number as 0: the adder must refuse it."""
    rid = str(uuid.uuid4())
    good = {1: field(1, 2, varint(len(rid)) + rid.encode()), 2: field(2, 0, varint(40)), 3: field(3, 0, varint(2))}
    good[number] = field(number, wire_type, payload)
    raw = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as refused:
        raw(b"".join(good.values()), timeout=15)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert_still_serving(channel)


def test_plain_proto3_client_leaving_numbers_at_zero_works(channel):
    """Zero numbers are absent on the wire (proto3 default): a valid request, not a wrong wire type."""
    rid = str(uuid.uuid4())
    payload = field(1, 2, varint(len(rid)) + rid.encode())  # first_number = second_number = 0
    assert sum_pb2.AddNumbersRequest(request_id=rid).SerializeToString() == payload
    raw = channel.unary_unary(
        METHOD, request_serializer=None, response_deserializer=sum_pb2.AddNumbersResponse.FromString
    )
    reply = raw(payload, timeout=15)
    assert (reply.request_id, reply.result, reply.duplicate) == (rid, 0, False)
    code, reply, details = call(channel, str(uuid.uuid4()), -5, 0)  # one number at 0
    assert code is grpc.StatusCode.OK and reply.result == -5, details


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(kind: int, flags: int, stream: int, payload: bytes, length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return struct.pack(">I", size)[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def garbage_streams(rng: random.Random) -> list[bytes]:
    settings_frame = h2_frame(0x4, 0, 0, b"")
    return [
        rng.randbytes(4096),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(200),  # a TLS ClientHello start
        H2_PREFACE[:10],  # a truncated preface
        H2_PREFACE + rng.randbytes(1000),
        H2_PREFACE + settings_frame + h2_frame(0x1, 0x5, 1, rng.randbytes(64)),  # HEADERS: garbage HPACK
        H2_PREFACE + settings_frame + h2_frame(0x0, 0x1, 0, b"data on stream 0"),
        H2_PREFACE + settings_frame + h2_frame(0x4, 0, 0, b"\x00\x04\xff\xff\xff\xff"),  # bad window
        H2_PREFACE + settings_frame + h2_frame(0x9, 0, 7, b"x" * 10),  # CONTINUATION out of the blue
        H2_PREFACE + settings_frame + h2_frame(0x0, 0, 1, b"", length=16_000_000),  # huge declared frame
        H2_PREFACE + settings_frame + b"".join(h2_frame(rng.randrange(256), rng.randrange(256),
                                                        rng.randrange(1 << 31), rng.randbytes(rng.randrange(64)))
                                               for _ in range(50)),
    ]  # fmt: skip


def test_garbage_bytes_on_tcp_and_http2_connections(adder, channel):
    host, port = adder.target.rsplit(":", 1)
    rng = random.Random(5)
    for blob in garbage_streams(rng):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            try:
                sock.sendall(blob)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):  # until the server closes the connection
                    pass
            except (ConnectionResetError, BrokenPipeError, TimeoutError):
                pass  # the server may cut us off: fine, as long as it keeps serving others
        assert adder.is_alive(), adder.log_tail()
        assert_still_serving(channel)
    # many half-open connections at once, then abandoned
    socks = [socket.create_connection((host, int(port)), timeout=5) for _ in range(50)]
    for sock in socks:
        sock.sendall(H2_PREFACE[: rng.randrange(1, len(H2_PREFACE))])
    for sock in socks:
        sock.close()
    assert_still_serving(channel)
