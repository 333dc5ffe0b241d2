"""Header keys and values as any Kafka client can write them: read and written back byte for byte."""

from __future__ import annotations

from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from sumflow.adapters.dlq_publisher import DEFAULT_MAX_COPY_BYTES, copy_size, full_copy, reference_copy
from sumflow.adapters.kafka_records import NULL_HEADERS, RawHeaderKey, install_lenient_header_keys, writable_headers
from sumflow.domain.events import InvalidReason
from sumflow.domain.ledger import Record, Rejected
from sumflow.observability.accumulator_telemetry import traceparent_trace_id
from sumflow.service_layer.accumulator_status import AccumulatorStatus

RAW = b"\xff\xfe-key"


def batch_with_headers(headers: list) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    builder.append(0, timestamp=1, key=b"k", value=b"v", headers=headers)
    return bytes(builder.build())


def test_a_non_utf8_header_key_is_read_and_written_back_unchanged():
    install_lenient_header_keys()
    raw_key = RawHeaderKey(RAW.decode("utf-8", "surrogateescape"))
    data = batch_with_headers([(raw_key, b"v1"), ("ok", None)])
    records = list(DefaultRecordBatch(data))
    assert len(records) == 1
    (key, value), (key2, value2) = records[0].headers
    assert key.encode() == RAW and value == b"v1" and (key2, value2) == ("ok", None)
    again = list(DefaultRecordBatch(batch_with_headers(writable_headers(records[0].headers))))
    keys = [k.encode() for k, _ in again[0].headers]
    assert keys == [RAW, b"ok", NULL_HEADERS.encode()]
    assert dict(again[0].headers)[NULL_HEADERS] == b"1"


def test_null_traceparent_has_no_trace_id():
    assert traceparent_trace_id([("traceparent", None)]) is None
    tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert traceparent_trace_id([("traceparent", None), ("traceparent", tp)]) == "0af7651916cd43dd8448eb211c80319c"


def test_a_dlq_copy_too_large_becomes_a_small_reference_copy():
    value = b"x" * (DEFAULT_MAX_COPY_BYTES + 1)
    item = Rejected(Record(2, 41, b"k", value, (("h", b"v"),)), InvalidReason.INVALID_JSON, "value is not valid JSON")
    assert copy_size(*full_copy(item, "t")) > DEFAULT_MAX_COPY_BYTES
    key, small, headers = reference_copy(item, "t")
    h = dict(headers)
    assert copy_size(key, small, headers) < 4096
    assert small == value[: len(small)] and h["dlq.original.value.bytes"] == str(len(value)).encode()
    assert (h["dlq.source.partition"], h["dlq.source.offset"], h["dlq.truncated"]) == (b"2", b"41", b"true")


def test_health_fails_only_after_stall_seconds_without_progress():
    now = [100.0]
    status = AccumulatorStatus(stall_seconds=10, clock=lambda: now[0])
    status.state_loaded = status.partitions_assigned = True
    now[0] += 9
    assert status.health() == (True, "ok") and status.readiness() == (True, "ready")
    now[0] += 2
    healthy, reason = status.health()
    assert not healthy and "no progress for 11 s" in reason
    status.error = "state commit failing: OSError: disk full"
    assert status.readiness() == (False, status.error)
    assert status.health()[1].endswith("(state commit failing: OSError: disk full)")
    status.progressed()
    status.error = None
    assert status.health() == (True, "ok") and status.readiness() == (True, "ready")
