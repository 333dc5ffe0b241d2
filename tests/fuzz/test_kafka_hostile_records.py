"""Hostile records on the summation topic, consumed by the real accumulator process.

Invalid JSON, missing fields, wrong types, nulls, huge values, binary garbage, oversized values and
random byte flips of valid events, in both record versions (v1: one summation, v2: several), go to
the DLQ (once each, with a reason header) and never stop the consumer; unknown extra fields are
ignored (the event is applied). A v2 record with one bad summation is invalid as a whole. The total
is the exact sum of the valid summations, judged by an oracle written independently of the
service's decoder.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid

from kafka import KafkaProducer

from harness.topics import read_dlq

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_EVENT_BYTES = 64 * 1024  # documented in sumflow.domain.events
UUID_FORM = re.compile(r"[0-9a-fA-F]{32}")


def _int64(value: object) -> bool:
    return type(value) is int and INT64_MIN <= value <= INT64_MAX


def _summation(doc: object, names: tuple[str, ...]) -> tuple[str, int] | None:
    """(canonical request id, result) of one valid summation object, else None."""
    if not isinstance(doc, dict):
        return None
    rid = doc.get("request_id")
    if not isinstance(rid, str) or len(rid) > 36 or not UUID_FORM.fullmatch(rid.replace("-", "")):
        return None
    fields = [doc.get(k) for k in names]
    if not all(_int64(f) for f in fields) or fields[0] + fields[1] != fields[2]:
        return None
    return str(uuid.UUID(hex=rid.replace("-", ""))), fields[2]


def valid_summations(value: bytes | None) -> list[tuple[str, int]] | None:
    """The documented contract, independently: the record's (request id, result) pairs if valid, else None."""
    if value is None or len(value) > MAX_EVENT_BYTES:
        return None
    try:
        doc = json.loads(value, parse_constant=lambda _: None)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or type(doc.get("v", 1)) is not int:
        return None
    if doc.get("v", 1) == 1:
        one = _summation(doc, ("first_number", "second_number", "result", "produced_at_ms"))
        return None if one is None else [one]
    items = doc.get("events")
    if doc["v"] != 2 or not _int64(doc.get("produced_at_ms")) or not isinstance(items, list) or not items:
        return None
    pairs = [_summation(item, ("first_number", "second_number", "result")) for item in items]
    return None if None in pairs else pairs  # type: ignore[return-value]


def event(first: int, second: int, **changes: object) -> dict:
    doc = {
        "v": 1,
        "request_id": str(uuid.uuid4()),
        "first_number": first,
        "second_number": second,
        "result": first + second,
        "produced_at_ms": int(time.time() * 1000),
    }
    doc.update(changes)
    return doc


def batch(*items: dict, **changes: object) -> dict:
    """A v2 record of `items` (v1-shaped events: their own v and produced_at_ms are dropped)."""
    doc = {
        "v": 2,
        "produced_at_ms": int(time.time() * 1000),
        "events": [without(without(item, "v"), "produced_at_ms") for item in items],
    }
    doc.update(changes)
    return doc


def without(doc: dict, name: str) -> dict:
    return {k: v for k, v in doc.items() if k != name}


def dumps(doc: object) -> bytes:
    return json.dumps(doc).encode()


def hostile_values(rng: random.Random) -> list[bytes | None]:
    values: list[bytes | None] = [
        b'{"v": 1, "request_id": ',  # truncated JSON
        b"",
        None,  # a tombstone
        b"null",
        b"[1, 2, 3]",
        b'"a string"',
        b"42",
        b'{"first_number": NaN}',
        b"[" * 5000 + b"]" * 5000,  # nesting beyond any parser's limit
        '{"request_id": "é"}'.encode("latin-1"),  # not UTF-8
        rng.randbytes(200),
        b"\x00" * 64,
        dumps(event(1, 2, v=2)),
        dumps(event(1, 2, v="1")),
        dumps(event(1, 2, request_id="not-a-uuid")),
        dumps(event(1, 2, request_id=12345)),
        dumps(event(1, 2, request_id=None)),
        dumps(event(1, 2, request_id="٣" * 32)),
        dumps(event(1, 2, first_number="1")),
        dumps(event(1, 2, first_number=1.0)),
        dumps(event(1, 2, first_number=True, result=3)),
        dumps(event(1, 2, second_number=None)),
        dumps(event(1, 2, result=4)),
        dumps(event(1, 2, produced_at_ms="yesterday")),
        dumps(event(2**63, 0)),  # beyond int64
        dumps(event(10**100, 1)),
        dumps(event(INT64_MAX, 1)),  # result beyond int64
        dumps(event(1, 2, padding="x" * (MAX_EVENT_BYTES + 10))),  # oversized (documented limit)
        dumps(event(1, 2, padding="y" * 1_000_000)),  # close to the broker's default record limit
    ]
    base = event(5, 6)
    values += [dumps(without(base, name)) for name in base]  # each field missing in turn
    values += [  # v2: the record, or one of its summations, wrong: nothing of it is applied
        dumps(batch()),  # no summation
        dumps(without(batch(event(1, 2)), "events")),
        dumps(without(batch(event(1, 2)), "produced_at_ms")),
        dumps(batch(event(1, 2), produced_at_ms="now")),
        dumps(batch(event(1, 2), events={"a": 1})),
        dumps(batch(event(1, 2), events=[event(1, 2), 7])),
        dumps(batch(event(1, 2), events=[event(1, 2), None])),
        dumps(batch(event(1, 2), v=3)),
        dumps(batch(event(1, 2), v="2")),
        dumps(batch(event(1, 2), event(3, 4, result=8))),  # the second one wrong
        dumps(batch(event(1, 2), event(3, 4, request_id="nope"))),
        dumps(batch(event(1, 2), without(event(3, 4), "second_number"))),
        dumps(batch(event(INT64_MAX, 0), event(INT64_MAX, 1))),
        dumps(batch(*[event(1, 2, padding="z" * 1000) for _ in range(70)])),  # beyond the size limit
    ]
    return values


def valid_values(rng: random.Random, count: int) -> list[bytes]:
    values = []
    for i in range(count):
        first, second = rng.randint(-(10**12), 10**12), rng.randint(-(10**12), 10**12)
        doc = event(first, second)
        if i % 5 == 0:
            doc |= {"extra": {"nested": [1, None, "x"]}, "zz": None}  # unknown extra fields: ignored
        if i % 7 == 0:
            doc["request_id"] = doc["request_id"].upper()
        values.append(dumps(doc))
    return values


def valid_batches(rng: random.Random, count: int) -> list[bytes]:
    """Valid v2 records of 1-20 summations, some with unknown extra fields or upper-case ids."""
    values = []
    for i in range(count):
        items = [
            event(rng.randint(-(10**12), 10**12), rng.randint(-(10**12), 10**12)) for _ in range(rng.randint(1, 20))
        ]
        if i % 3 == 0:
            items[0] |= {"extra": [1, {"x": None}]}
            items[-1]["request_id"] = items[-1]["request_id"].upper()
        values.append(dumps(batch(*items, note="ignored") if i % 4 == 0 else batch(*items)))
    return values


def mutated_values(rng: random.Random, count: int) -> list[bytes]:
    """Valid v1 and v2 records with 1-3 random bytes changed: some still valid, most not."""
    out = []
    for i in range(count):
        doc = event(rng.randint(0, 10**6), rng.randint(0, 10**6))
        if i % 2:
            doc = batch(doc, event(rng.randint(0, 10**6), rng.randint(0, 10**6)))
        raw = bytearray(dumps(doc))
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        out.append(bytes(raw))
    return out


def test_hostile_records_go_to_the_dlq_and_valid_ones_are_exact(kafka_broker, accumulator):
    acc, topic, dlq = accumulator
    rng = random.Random(17)
    values = hostile_values(rng) + valid_values(rng, 200) + valid_batches(rng, 60) + mutated_values(rng, 200)
    rng.shuffle(values)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", max_request_size=4 << 20)
    sent = []  # (partition, offset, value)
    for i, value in enumerate(values):
        key = rng.choice([None, b"k", rng.randbytes(8), str(i).encode()])
        if key is None and value is None:
            key = b"tombstone"
        meta = producer.send(topic, key=key, value=value).get(timeout=30)
        sent.append((meta.partition, meta.offset, value))
    producer.close(10)

    applied_ids: set[str] = set()
    expected_total = 0
    invalid_positions = set()
    for partition, offset, value in sent:
        pairs = valid_summations(value)
        if pairs is None:
            invalid_positions.add((partition, offset))
            continue
        for rid, result in pairs:
            if rid not in applied_ids:  # a mutation may keep the id of nothing else: ids are unique
                applied_ids.add(rid)
                expected_total += result
    assert len(invalid_positions) > 100  # the suite really is hostile

    final = acc.wait_applied(len(applied_ids), timeout=120)
    dead = read_dlq(kafka_broker.bootstrap, dlq, len(invalid_positions))
    time.sleep(1)
    assert acc.total() == {"total": expected_total, "applied": len(applied_ids)} == final
    assert acc.is_alive() and acc.ready(), acc.log_tail()
    dlq_positions = []
    for record in dead:
        headers = dict(record.headers)
        assert headers["dlq.reason"], headers
        assert headers["dlq.source.topic"].decode() == topic
        dlq_positions.append((int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"])))
    assert len(dlq_positions) == len(set(dlq_positions)), "each invalid record once in the DLQ"
    assert set(dlq_positions) == invalid_positions
