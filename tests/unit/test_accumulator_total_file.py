"""total.json: atomic replacement, exact big totals."""

from __future__ import annotations

from sumflow.adapters.total_file import read_total_file, total_file_path, write_total_file
from sumflow.domain.ledger import LedgerState


def test_write_then_read_keeps_big_totals_exact(tmp_path):
    big = 2**64 * 3 + 7
    write_total_file(tmp_path, LedgerState(big, 12, {1: 5, 0: 9}), 1_700_000_000.5)
    doc = read_total_file(tmp_path)
    assert doc == {
        "total": big,
        "applied": 12,
        "next_offsets": {"0": 9, "1": 5},
        "updated_at": "2023-11-14T22:13:20.500Z",
    }


def test_replace_leaves_no_temporary_file_and_overwrites(tmp_path):
    write_total_file(tmp_path, LedgerState(1, 1, {}), 1.0)
    write_total_file(tmp_path, LedgerState(-5, 2, {0: 2}), 2.0)
    assert read_total_file(tmp_path)["total"] == -5
    assert sorted(p.name for p in tmp_path.iterdir()) == [total_file_path(tmp_path).name]
