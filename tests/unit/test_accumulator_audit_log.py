"""Audit segments: rotation, retention, and truncation back to the committed position."""

from __future__ import annotations

import orjson
import pytest

from sumflow.adapters.audit_log import (
    AuditInconsistent,
    AuditLog,
    AuditPosition,
    audit_event,
    audit_lines,
    list_segments,
    read_audit,
)
from sumflow.domain.events import SummationEvent


def _line(i: int) -> bytes:
    return audit_lines([SummationEvent(f"00000000-0000-4000-8000-{i:012d}", i, 1, i + 1, 0, 0, i)], 1.0)


def test_append_rotates_by_size_and_keeps_the_newest_segments(tmp_path):
    log = AuditLog(tmp_path, max_bytes=4096, keep_files=3)
    log.recover(AuditPosition(1, 0))
    for i in range(200):
        log.append([_line(i)])
    log.close()
    segments = list_segments(tmp_path)
    assert len(segments) == 3
    assert all(path.stat().st_size <= 4096 for _, path in segments)
    ids = [doc["first_number"] for doc in read_audit(tmp_path)]
    assert ids == list(range(ids[0], 200))  # the newest lines, in order, none torn


def test_recover_truncates_uncommitted_bytes_and_newer_segments(tmp_path):
    log = AuditLog(tmp_path, max_bytes=1 << 20, keep_files=5)
    log.recover(AuditPosition(1, 0))
    committed = log.append([_line(i) for i in range(10)])
    log.close()
    # a crashed process wrote more lines and a newer segment that the state never committed
    with open(tmp_path / "audit-000001.jsonl", "ab") as handle:
        handle.write(_line(10) + _line(11)[:20])
    (tmp_path / "audit-000002.jsonl").write_bytes(_line(12))

    again = AuditLog(tmp_path, max_bytes=1 << 20, keep_files=5)
    again.recover(committed)
    assert [n for n, _ in list_segments(tmp_path)] == [1]
    assert [doc["first_number"] for doc in read_audit(tmp_path)] == list(range(10))
    assert again.append([_line(10)]) == AuditPosition(1, committed.size + len(_line(10)))
    again.close()


def test_recover_refuses_an_audit_shorter_than_committed(tmp_path):
    log = AuditLog(tmp_path, max_bytes=1 << 20, keep_files=5)
    log.recover(AuditPosition(1, 0))
    position = log.append([_line(1), _line(2)])
    log.close()
    path = tmp_path / "audit-000001.jsonl"
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(AuditInconsistent, match=r"audit-000001\.jsonl holds 10 bytes"):
        AuditLog(tmp_path, max_bytes=1 << 20, keep_files=5).recover(position)


def test_audit_lines_keep_the_format_that_readers_and_rebuild_expect():
    """One JSON object a line, these keys in this order: older audit files read the same way."""
    events = [
        SummationEvent("00000000-0000-4000-8000-000000000001", 1, -2, -1, 1_700_000_000_123, 0, 5),
        SummationEvent("00000000-0000-4000-8000-000000000002", 2**62, 2**62, 2**63, 0, 2, 9),
    ]
    assert audit_lines(events, 1_700_000_000.123456) == (
        b'{"request_id":"00000000-0000-4000-8000-000000000001","first_number":1,"second_number":-2,"result":-1,'
        b'"partition":0,"offset":5,"produced_at_ms":1700000000123,"applied_at":1700000000.123456}\n'
        b'{"request_id":"00000000-0000-4000-8000-000000000002","first_number":4611686018427387904,'
        b'"second_number":4611686018427387904,"result":9223372036854775808,"partition":2,"offset":9,'
        b'"produced_at_ms":0,"applied_at":1700000000.123456}\n'
    )
    assert audit_lines([SummationEvent('odd"id\\', 0, 0, 0, 0, 1, 1)], 1e-7) == (
        b'{"request_id":"odd\\"id\\\\","first_number":0,"second_number":0,"result":0,"partition":1,"offset":1,'
        b'"produced_at_ms":0,"applied_at":1e-7}\n'
    )
    assert audit_lines([], 1.0) == b""


def test_audit_lines_read_back_as_the_same_events(tmp_path):
    events = [
        SummationEvent(f"00000000-0000-4000-8000-{i:012d}", i, -3, i - 3, 1_700_000_000_000 + i, i % 3, 7 + i)
        for i in range(5)
    ]
    log = AuditLog(tmp_path, max_bytes=1 << 20, keep_files=2)
    log.recover(AuditPosition(1, 0))
    log.append([audit_lines(events, 2.5)])
    log.close()
    assert [audit_event(doc) for doc in read_audit(tmp_path)] == events


@pytest.mark.parametrize(
    "doc",
    [
        {"first_number": 1},
        {
            "request_id": "not-a-uuid",
            "first_number": 1,
            "second_number": 1,
            "result": 2,
            "partition": 0,
            "offset": 0,
            "produced_at_ms": 0,
        },
        {
            "request_id": "00000000-0000-4000-8000-000000000001",
            "first_number": 1.0,
            "second_number": 1,
            "result": 2,
            "partition": 0,
            "offset": 0,
            "produced_at_ms": 0,
        },
    ],
)
def test_an_audit_line_that_is_not_an_event_is_none(doc):
    assert audit_event(orjson.loads(orjson.dumps(doc))) is None


def test_an_audit_id_is_read_in_canonical_form():
    doc = {
        "request_id": "00000000-0000-4000-8000-00000000000A",
        "first_number": 1,
        "second_number": 1,
        "result": 2,
        "partition": 0,
        "offset": 0,
        "produced_at_ms": 0,
        "applied_at": 1.0,
    }
    assert audit_event(doc).request_id == "00000000-0000-4000-8000-00000000000a"
