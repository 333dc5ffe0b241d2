"""Records any standard Kafka client can write, consumed by the real accumulator process.

Every compression codec the broker accepts, header keys that are not UTF-8, null header values and a
null traceparent, records near the topic's size limit and transactions (committed and aborted),
all written with kafka-python's own producer and codecs. Valid events are counted exactly, invalid
ones reach the DLQ once each with a reason (a too-large copy as a reference copy), aborted events are
never counted, and the accumulator stays ready and healthy throughout.
"""

from __future__ import annotations

import time
import uuid

from kafka import KafkaProducer

from harness.kafka import console_produce
from harness.processes import AccumulatorProcess
from harness.topics import read_dlq
from sumflow.adapters.kafka_records import RawHeaderKey, install_lenient_header_keys
from tests.fixtures.event_records import event_value

CODECS = ("gzip", "snappy", "lz4", "zstd")
TOPIC_MAX_BYTES = 1_048_588  # the broker's default max.message.bytes


def event(first: int, second: int) -> bytes:
    """A valid event with a fresh request id, written by the shared hand-made encoder."""
    return event_value(str(uuid.uuid4()), first, second)


def assert_healthy(acc: AccumulatorProcess) -> None:
    status, body = acc.get("/healthz")
    assert status == 200, body
    assert acc.is_alive() and acc.ready(), acc.log_tail()


def test_every_codec_header_size_and_transaction_is_counted_or_dead_lettered(kafka_broker, accumulator):
    acc, topic, dlq = accumulator
    boot = kafka_broker.bootstrap
    expected_total = 0
    expected_applied = 0
    invalid = 0

    # every codec: valid events counted, an invalid one per codec dead-lettered
    for i, codec in enumerate(CODECS):
        producer = KafkaProducer(bootstrap_servers=boot, acks="all", compression_type=codec, linger_ms=20)
        for j in range(50):
            producer.send(topic, key=str(j).encode(), value=event(i, j))
            expected_total += i + j
            expected_applied += 1
        producer.send(topic, value=b'{"not": "an event"}')
        invalid += 1
        producer.flush(30)
        producer.close(10)

    producer = KafkaProducer(bootstrap_servers=boot, acks="all", max_request_size=4 << 20)
    raw_key = RawHeaderKey(b"\xff\xfe key \xc3".decode("utf-8", "surrogateescape"))
    odd_headers = [("", b""), (raw_key, b"\x00\xff"), ("k\u00e9y", b"\xff" * 3)]  # one key not UTF-8
    producer.send(topic, value=event(7, 8), headers=odd_headers).get(30)
    producer.send(topic, value=b"garbage", headers=odd_headers).get(30)  # its DLQ copy keeps them
    expected_total += 15
    expected_applied += 1
    invalid += 1
    # null header values (a null traceparent on a valid event), as the Java client writes them
    console_produce(
        boot,
        topic,
        [f"traceparent:<NULL>,x:y\t{event(3, 4).decode()}", "traceparent:<NULL>,x:y\tnull-garbage"],
        {"parse.headers": "true", "null.marker": "<NULL>"},
    )
    expected_total += 7
    expected_applied += 1
    invalid += 1
    # a record at the topic's size limit: invalid, and its DLQ copy (plus our headers) is too large
    big = b"x" * (TOPIC_MAX_BYTES - 200)
    producer.send(topic, key=b"big", value=big, headers=[("h", b"v")]).get(30)
    invalid += 1
    producer.send(topic, value=event(1000, 1)).get(30)  # counting goes on after it
    expected_total += 1001
    expected_applied += 1
    producer.close(10)

    # transactions: committed events counted, aborted ones never
    tx = KafkaProducer(bootstrap_servers=boot, transactional_id=f"tx-{uuid.uuid4().hex}", acks="all")
    tx.init_transactions()
    tx.begin_transaction()
    for _ in range(20):
        tx.send(topic, value=event(10**9, 0))
    tx.flush(30)
    tx.abort_transaction()
    tx.begin_transaction()
    for k in range(20):
        tx.send(topic, value=event(k, 1))
        expected_total += k + 1
        expected_applied += 1
    tx.commit_transaction()
    tx.close(10)

    final = acc.wait_applied(expected_applied, timeout=120)
    install_lenient_header_keys()  # this process reads the DLQ copy of the non-UTF-8 key too
    dead = read_dlq(boot, dlq, invalid)
    time.sleep(1)
    assert acc.total() == {"total": expected_total, "applied": expected_applied} == final
    assert_healthy(acc)

    assert len(dead) == invalid, [dict(r.headers).get("dlq.reason") for r in dead]
    positions = {(dict(r.headers)["dlq.source.partition"], dict(r.headers)["dlq.source.offset"]) for r in dead}
    assert len(positions) == invalid, "each invalid record once in the DLQ"
    copies = {r.value: r for r in dead}
    odd = copies[b"garbage"]
    keys = [k.encode("utf-8", "surrogateescape") for k, _ in odd.headers]
    assert raw_key.encode() in keys, keys  # the non-UTF-8 key, byte for byte
    nulls = dict(copies[b"null-garbage"].headers)
    assert (nulls["traceparent"], nulls["x"], nulls["dlq.null.headers"]) == (b"", b"y", b"0")
    assert all(r.headers and dict(r.headers)["dlq.reason"] for r in dead)
    truncated = [r for r in dead if dict(r.headers).get("dlq.truncated") == b"true"]
    assert len(truncated) == 1, [dict(r.headers) for r in dead]
    headers = dict(truncated[0].headers)
    assert headers["dlq.original.value.bytes"] == str(len(big)).encode()
    assert truncated[0].value == big[: len(truncated[0].value)] and len(truncated[0].value) < 4096
