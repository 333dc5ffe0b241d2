"""The adder's de-dupe store on a real diskcache directory (tmp_path), including across processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from sumflow.adapters.adder_ports import DedupeUnavailable
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


def test_concurrent_threads_share_group_commits_and_one_claim_wins(tmp_path: Path) -> None:
    """64 threads write at once through the one writer: each gets its own answer, one claim wins."""
    store = _store(tmp_path)
    barrier = threading.Barrier(64)
    results: dict[int, tuple[bool, bool]] = {}

    def worker(i: int) -> None:
        own_id = str(uuid.UUID(int=i + 1))
        record = DedupeRecord.pending(AddCommand(own_id, i, 1), f"t{i}", 1, time.time())
        barrier.wait()
        shared = store.claim(RID, _pending(f"t{i}"))
        own = store.claim(own_id, record)
        store.complete(own_id, record.done())
        results[i] = (shared, own)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(shared for shared, _own in results.values()) == 1
    assert all(own for _shared, own in results.values()) and len(results) == 64
    for i in range(64):
        stored = store.get(str(uuid.UUID(int=i + 1)))
        assert stored is not None and stored.state is RecordState.DONE and stored.result == i + 1
    store.close()


def test_expired_records_are_deleted_from_disk_by_the_timed_cull(tmp_path: Path) -> None:
    store = DedupeStore(tmp_path, ttl_seconds=0.2, size_limit_bytes=1 << 20, cull_interval_seconds=0.1)
    store.claim(RID, _pending("a"))
    time.sleep(0.4)
    other = "5d2f8a3e-1b4c-4e6f-8a9b-0c1d2e3f4a5b"
    store.claim(other, _pending("b"))  # the writer culls after this batch (the interval has passed)
    store.complete(other, _pending("b").done())  # served by the same writer thread after that cull
    with sqlite3.connect(tmp_path / "cache.db") as db:
        keys = [row[0] for row in db.execute("SELECT key FROM Cache")]
    assert keys == [other]
    store.close()


def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.claim(RID, _pending("a"))
    store.close()
    with pytest.raises(DedupeUnavailable):
        store.claim("5d2f8a3e-1b4c-4e6f-8a9b-0c1d2e3f4a5b", _pending("b"))


def test_complete_later_calls_back_after_the_done_record_is_committed(tmp_path: Path) -> None:
    store = _store(tmp_path)
    record = _pending("a")
    store.claim(RID, record)
    seen: list[object] = []
    called = threading.Event()

    def then(error: DedupeUnavailable | None) -> None:
        stored = store.get(RID)  # on the writer thread, after the commit
        seen.append((error, stored.state if stored else None))
        called.set()

    store.complete_later(RID, record.done(), then)
    assert called.wait(10)
    assert seen == [(None, RecordState.DONE)]
    store.close()


def test_claim_later_and_replace_later_report_their_outcome_after_the_commit(tmp_path: Path) -> None:
    store = _store(tmp_path)
    old, new = _pending("dead", pid=999_999), _pending("alive")
    outcomes: list[tuple[str, bool, DedupeUnavailable | None, DedupeRecord | None]] = []
    called = threading.Semaphore(0)

    def then(step: str) -> Callable[[bool, DedupeUnavailable | None], None]:
        def report(done: bool, error: DedupeUnavailable | None) -> None:
            outcomes.append((step, done, error, store.get(RID)))  # on the writer thread, after the commit
            called.release()

        return report

    for step, write in [
        ("claim", lambda report: store.claim_later(RID, old, report)),
        ("claim again", lambda report: store.claim_later(RID, new, report)),
        ("replace stale", lambda report: store.replace_later(RID, new, _pending("third"), report)),
        ("replace", lambda report: store.replace_later(RID, old, new, report)),
    ]:
        write(then(step))
        assert called.acquire(timeout=10)
    assert outcomes == [
        ("claim", True, None, old),
        ("claim again", False, None, old),
        ("replace stale", False, None, old),
        ("replace", True, None, new),
    ]
    store.close()
    with pytest.raises(DedupeUnavailable):
        store.replace_later(RID, new, old, then("closed"))
