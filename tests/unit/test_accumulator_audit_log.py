"""Audit segments: rotation, retention, and truncation back to the committed position."""

from __future__ import annotations

import pytest

from sumflow.adapters.audit_log import (
    AuditInconsistent,
    AuditLog,
    AuditPosition,
    audit_line,
    audit_lines,
    list_segments,
    read_audit,
)


def _line(i: int) -> bytes:
    return audit_line(
        f"00000000-0000-4000-8000-{i:012d}", i, 1, i + 1, partition=0, offset=i, produced_at_ms=0, applied_at=1.0
    )


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


def test_batch_lines_are_the_same_json_as_single_lines():
    applied = [
        ("00000000-0000-4000-8000-000000000001", 1, -2, -1, 1_700_000_000_123, 0, 5),
        ("00000000-0000-4000-8000-000000000002", 2**62, 2**62, 2**63, 0, 2, 9),
        ('odd"id\\', 0, 0, 0, 0, 1, 1),  # not canonical: rendered (escaped) by audit_line
    ]
    for now in (1.0, 1_700_000_000.123456, 1e-7):
        expected = b"".join(
            audit_line(r, f, s, t, partition=p, offset=o, produced_at_ms=pm, applied_at=now)
            for r, f, s, t, pm, p, o in applied
        )
        assert audit_lines(applied, now) == expected
    assert audit_lines([], 1.0) == b""
