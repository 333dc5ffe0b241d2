"""Kafka record headers as any client can write them, read and written back byte for byte.

A Kafka header key is a length-prefixed byte string on the wire. The Java client only writes UTF-8
keys, but nothing stops another client, and kafka-python (3.0) decodes every key with strict UTF-8:
one record with a non-UTF-8 key made every poll of its partition fail, so nothing after it could
ever be counted. `install_lenient_header_keys()` makes the record reader fall back, only for such a
record, to decoding its keys with `surrogateescape` into a RawHeaderKey: a str whose encode() gives
back the original bytes, so kafka-python's size accounting and the DLQ copy of the record work.

Header values may be null (the Java client writes them); kafka-python's producer refuses a None
value, so `writable_headers` turns them into empty values and names their positions in a header.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from kafka.record.default_records import ControlRecord, DefaultRecord, DefaultRecordBatch
from kafka.record.util import decode_varint

NULL_HEADERS = "dlq.null.headers"  # comma-separated positions of headers whose value was null

_installed = False
_install_lock = threading.Lock()


class RawHeaderKey(str):
    """A header key that kafka-python's producer writes as its original bytes (surrogateescape)."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return str.encode(self, "utf-8", "surrogateescape")


def header_key_bytes(key: str) -> bytes:
    """The key's bytes on the wire (a surrogate-escaped key gives back its original bytes)."""
    return key.encode("utf-8", "surrogateescape")


def writable_headers(headers: Iterable[tuple[str, bytes | None]]) -> list[tuple[str, bytes]]:
    """Headers kafka-python's producer accepts, losing nothing: raw keys kept, null values named."""
    out: list[tuple[str, bytes]] = []
    null_positions = []
    for i, (key, value) in enumerate(headers):
        if value is None:
            null_positions.append(str(i))
        out.append((RawHeaderKey(key), b"" if value is None else value))
    if null_positions:
        out.append((NULL_HEADERS, ",".join(null_positions).encode()))
    return out


def _read_msg_lenient(batch: DefaultRecordBatch) -> DefaultRecord | ControlRecord:
    """kafka-python's DefaultRecordBatch._read_msg with header keys decoded by surrogateescape."""
    buffer = batch._buffer
    pos = batch._pos
    length, pos = decode_varint(buffer, pos)
    start_pos = pos
    _, pos = decode_varint(buffer, pos)  # attributes
    ts_delta, pos = decode_varint(buffer, pos)
    if batch.timestamp_type == batch.LOG_APPEND_TIME:
        timestamp = batch.max_timestamp
    else:
        timestamp = batch.first_timestamp + ts_delta
    offset_delta, pos = decode_varint(buffer, pos)
    offset = batch.base_offset + offset_delta
    fields: list[bytes | None] = []
    for _ in range(2):  # key, value
        size, pos = decode_varint(buffer, pos)
        if size >= 0:
            fields.append(bytes(buffer[pos : pos + size]))
            pos += size
        else:
            fields.append(None)
    count, pos = decode_varint(buffer, pos)
    if count < 0:
        raise ValueError(f"invalid number of record headers {count}")
    headers = []
    for _ in range(count):
        key_len, pos = decode_varint(buffer, pos)
        if key_len < 0:
            raise ValueError(f"invalid negative header key size {key_len}")
        key = RawHeaderKey(bytes(buffer[pos : pos + key_len]).decode("utf-8", "surrogateescape"))
        pos += key_len
        value_len, pos = decode_varint(buffer, pos)
        value = None
        if value_len >= 0:
            value = bytes(buffer[pos : pos + value_len])
            pos += value_len
        headers.append((key, value))
    if pos - start_pos != length:
        raise ValueError(f"invalid record size: expected {length} bytes, read {pos - start_pos}")
    batch._pos = pos
    cls = ControlRecord if batch.is_control_batch else DefaultRecord
    return cls(length, offset, timestamp, batch.timestamp_type, fields[0], fields[1], headers)


def install_lenient_header_keys() -> None:
    """Patch kafka-python's record reader (idempotent): strict first, lenient only on a bad key."""
    global _installed
    with _install_lock:
        if _installed:
            return
        strict = DefaultRecordBatch._read_msg

        def read_msg(self: DefaultRecordBatch, decode_varint=decode_varint) -> DefaultRecord | ControlRecord:  # noqa: ANN001
            start = self._pos
            try:
                return strict(self, decode_varint)
            except UnicodeDecodeError:
                self._pos = start
                return _read_msg_lenient(self)

        DefaultRecordBatch._read_msg = read_msg  # type: ignore[method-assign]
        _installed = True
