"""The adder's de-dupe store on a real diskcache directory (tmp_path), including across processes."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from sumflow.adapters.dedupe_store import DedupeStore
from sumflow.domain.idempotency import DedupeRecord, RecordState
from sumflow.domain.summation import AddCommand

RID = "0b6f8d1e-3c1a-4f7e-9a55-2f6a1c9d7e01"


def _store(path: Path, ttl: float = 3600) -> DedupeStore:
    return DedupeStore(path, ttl_seconds=ttl, size_limit_bytes=1 << 20)


def _pending(owner: str = "o1", pid: int = 1, first: int = 2, second: int = 3) -> DedupeRecord:
    return DedupeRecord.pending(AddCommand(RID, first, second), owner, pid, time.time())


def test_first_claim_wins_and_the_record_reads_back(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = _pending("a")
    assert store.claim(RID, first) is True
    assert store.claim(RID, _pending("b")) is False
    assert store.get(RID) == first
    store.close()


def test_complete_then_reopen_keeps_the_done_record(tmp_path: Path) -> None:
    store = _store(tmp_path)
    record = _pending("a")
    store.claim(RID, record)
    store.complete(RID, record.done())
    store.close()
    reopened = _store(tmp_path)
    stored = reopened.get(RID)
    assert stored is not None
    assert stored.state is RecordState.DONE
    assert (stored.first_number, stored.second_number, stored.result) == (2, 3, 5)
    reopened.close()


def test_release_only_deletes_a_pending_record_of_the_same_owner(tmp_path: Path) -> None:
    store = _store(tmp_path)
    record = _pending("a")
    store.claim(RID, record)
    assert store.release(RID, "someone-else") is False
    assert store.get(RID) == record
    assert store.release(RID, "a") is True
    assert store.get(RID) is None
    store.claim(RID, record)
    store.complete(RID, record.done())
    assert store.release(RID, "a") is False  # a done record is final
    store.close()


def test_replace_is_a_compare_and_set(tmp_path: Path) -> None:
    store = _store(tmp_path)
    old = _pending("dead", pid=999_999)
    store.claim(RID, old)
    new = _pending("alive")
    assert store.replace(RID, new, _pending("third")) is False  # expected does not match
    assert store.replace(RID, old, new) is True
    assert store.get(RID) == new
    store.close()


def test_records_expire_after_the_ttl(tmp_path: Path) -> None:
    store = _store(tmp_path, ttl=0.3)
    store.claim(RID, _pending("a"))
    assert store.get(RID) is not None
    time.sleep(0.5)
    assert store.get(RID) is None
    assert store.claim(RID, _pending("b")) is True
    store.close()


def _claim_in_child(path: str, owner: str, start_at: float, out: multiprocessing.Queue) -> None:
    store = _store(Path(path))
    while time.time() < start_at:
        time.sleep(0.001)
    out.put((owner, store.claim(RID, _pending(owner))))
    store.close()


def test_only_one_process_claims_an_id(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    start_at = time.time() + 1.5
    procs = [ctx.Process(target=_claim_in_child, args=(str(tmp_path), f"p{i}", start_at, out)) for i in range(4)]
    for proc in procs:
        proc.start()
    results = dict(out.get(timeout=30) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    winners = [owner for owner, won in results.items() if won]
    assert len(winners) == 1
    store = _store(tmp_path)
    stored = store.get(RID)
    assert stored is not None
    assert stored.owner == winners[0]
    store.close()
