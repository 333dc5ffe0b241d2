"""The adder's persistent de-duplication store: a `diskcache.Cache` keyed by request id.

Each record is a `DedupeRecord` (stored as a plain tuple) with an expiry of the configured TTL.
Every operation that must be atomic is one SQLite transaction, so several adder processes can
share one directory:
- `claim` = `Cache.add`: only the first call for an id creates its pending record;
- `replace` / `release` compare the stored record with the one the caller saw inside `transact()`.
Eviction is `least-recently-stored`: expired records are culled first, reads never write.

Writes go through one writer thread that commits everything queued so far in one SQLite
transaction (group commit; plus an flock on `<dir>/writer.lock` when several processes share the
directory). The calling gRPC thread waits on a latch for its own result. With dozens of gRPC threads
a per-write lock made each hand-over wait for the GIL (a convoy: 2 writes per call serialised at
~250 calls/s); one writer commits a whole batch per GIL hand-over. Reads (WAL) never wait for writers.
Expired and over-size records are culled by that writer at most once a second (`Cache.cull`), not
on every write: diskcache's per-write cull costs two queries per write.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import diskcache

from sumflow.adapters.adder_ports import DedupeUnavailable
from sumflow.domain.idempotency import DedupeRecord, RecordState

log = logging.getLogger(__name__)


class DedupeStore:
    """The adder's `DedupeStorePort` on a diskcache directory."""

    def __init__(
        self,
        directory: Path,
        *,
        ttl_seconds: float,
        size_limit_bytes: int,
        lock_timeout_seconds: float = 5.0,
        shared_between_processes: bool = False,
        cull_interval_seconds: float = 1.0,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.ttl_seconds = ttl_seconds
        self._cache = diskcache.Cache(
            str(directory),
            timeout=lock_timeout_seconds,
            size_limit=size_limit_bytes,
            eviction_policy="least-recently-stored",
            statistics=False,
            tag_index=False,
        )
        self._cache.cull_limit = 0  # not persisted: this instance culls on a timer instead (writer thread)
        self._lock_fd = -1
        if shared_between_processes:
            self._lock_fd = os.open(directory / "writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._writer = _GroupCommitWriter(self._cache, self._lock_fd, cull_interval_seconds)

    def claim(self, request_id: str, record: DedupeRecord) -> bool:
        """Store `record` if the id is unknown (atomic); False when a record already exists."""
        value = record.to_tuple()
        return bool(self._write(lambda cache: cache.add(request_id, value, expire=self.ttl_seconds)))

    def claim_later(
        self, request_id: str, record: DedupeRecord, then: Callable[[bool, DedupeUnavailable | None], None]
    ) -> None:
        """Like `claim` without blocking: `then(claimed, error_or_None)` runs on the writer thread after the commit.

        For the asyncio use case, whose event loop must not wait on the writer's latch.
        """
        value = record.to_tuple()
        self._write_later(lambda cache: bool(cache.add(request_id, value, expire=self.ttl_seconds)), then)

    def replace_later(
        self,
        request_id: str,
        expected: DedupeRecord,
        new: DedupeRecord,
        then: Callable[[bool, DedupeUnavailable | None], None],
    ) -> None:
        """Like `replace` without blocking: `then(replaced, error_or_None)` runs on the writer thread after commit."""
        self._write_later(self._replace_op(request_id, expected, new), then)

    def get(self, request_id: str) -> DedupeRecord | None:
        try:
            raw = self._cache.get(request_id, retry=True)
        except (diskcache.Timeout, OSError) as exc:
            raise DedupeUnavailable(f"de-dupe store: {exc}") from exc
        return _decode(raw)

    def replace(self, request_id: str, expected: DedupeRecord, new: DedupeRecord) -> bool:
        """Write `new` only if the stored record is still `expected` (compare-and-set)."""
        return bool(self._write(self._replace_op(request_id, expected, new)))

    def _replace_op(
        self, request_id: str, expected: DedupeRecord, new: DedupeRecord
    ) -> Callable[[diskcache.Cache], bool]:
        value = new.to_tuple()

        def op(cache: diskcache.Cache) -> bool:
            if _decode(cache.get(request_id)) != expected:
                return False
            cache.set(request_id, value, expire=self.ttl_seconds)
            return True

        return op

    def complete(self, request_id: str, record: DedupeRecord) -> None:
        """Store the final (done) record: the id's answer for the rest of the TTL."""
        value = record.to_tuple()

        self._write(lambda cache: cache.set(request_id, value, expire=self.ttl_seconds))

    def complete_later(
        self, request_id: str, record: DedupeRecord, then: Callable[[DedupeUnavailable | None], None]
    ) -> None:
        """Like `complete` without waiting: `then(error_or_None)` runs on the writer thread after the commit.

        The caller can answer its client at once: until the commit the id reads as pending with a
        live owner, so a repeat waits for it rather than publishing again.
        """
        value = record.to_tuple()

        def done(error: BaseException | None) -> None:
            then(None if error is None else DedupeUnavailable(f"de-dupe store: {error}"))

        try:
            self._writer.submit(lambda cache: cache.set(request_id, value, expire=self.ttl_seconds), done)
        except OSError as exc:
            raise DedupeUnavailable(f"de-dupe store: {exc}") from exc

    def release(self, request_id: str, owner: str) -> bool:
        """Delete the pending record if `owner` still owns it (so a retry with the id can publish)."""

        def op(cache: diskcache.Cache) -> bool:
            current = _decode(cache.get(request_id))
            if current is None or current.owner != owner or current.state is not RecordState.PENDING:
                return False
            return bool(cache.delete(request_id))

        return bool(self._write(op))

    def _write_later(
        self, op: Callable[[diskcache.Cache], bool], then: Callable[[bool, DedupeUnavailable | None], None]
    ) -> None:
        """Queue `op`; `then(op_result, None)` after its commit, or `then(False, DedupeUnavailable)`."""
        result: list[bool] = []

        def done(error: BaseException | None) -> None:
            if error is not None or not result:
                then(False, DedupeUnavailable(f"de-dupe store: {error}"))
            else:
                then(result[-1], None)

        try:
            self._writer.submit(lambda cache: result.append(op(cache)), done)
        except OSError as exc:
            raise DedupeUnavailable(f"de-dupe store: {exc}") from exc

    def _write(self, op: Callable[[diskcache.Cache], Any]) -> Any:
        try:
            return self._writer.run(op)
        except (diskcache.Timeout, OSError) as exc:
            raise DedupeUnavailable(f"de-dupe store: {exc}") from exc

    def close(self) -> None:
        self._writer.stop()
        self._cache.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _decode(raw: Any) -> DedupeRecord | None:
    if raw is None:
        return None
    try:
        return DedupeRecord.from_tuple(tuple(raw))
    except (TypeError, ValueError):
        return None  # unreadable (foreign or older format): treat as absent


class _Write:
    """One queued write: the operation, then its result or error.

    A caller that waits holds `done` (a held lock as latch); a fire-and-forget write has `then`,
    called on the writer thread after the commit with the error or None.
    """

    __slots__ = ("done", "error", "op", "result", "then")

    def __init__(
        self,
        op: Callable[[diskcache.Cache], Any],
        then: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        self.op = op
        self.then = then
        self.result: Any = None
        self.error: BaseException | None = None
        self.done: threading.Lock | None = None
        if then is None:
            self.done = threading.Lock()
            self.done.acquire()


class _GroupCommitWriter:
    """One thread applies queued writes, all that are waiting in one transaction per batch."""

    def __init__(self, cache: diskcache.Cache, lock_fd: int, cull_interval_seconds: float) -> None:
        self._cache = cache
        self._lock_fd = lock_fd
        self._cull_interval = cull_interval_seconds
        self._next_cull = 0.0
        self._queue: list[_Write] = []
        self._cond = threading.Condition(threading.Lock())
        self._stopping = False
        self._thread: threading.Thread | None = None

    def run(self, op: Callable[[diskcache.Cache], Any]) -> Any:
        write = _Write(op)
        self._enqueue(write)
        assert write.done is not None
        write.done.acquire()
        if write.error is not None:
            raise write.error
        return write.result

    def submit(self, op: Callable[[diskcache.Cache], Any], then: Callable[[BaseException | None], None]) -> None:
        """Queue `op` without waiting; `then(error_or_None)` runs on the writer thread once committed."""
        self._enqueue(_Write(op, then))

    def _enqueue(self, write: _Write) -> None:
        with self._cond:
            if self._stopping:
                raise OSError("de-dupe store closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="dedupe-writer", daemon=True)
                self._thread.start()
            self._queue.append(write)
            if len(self._queue) == 1:
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                batch, self._queue = self._queue, []
                if not batch:
                    return  # stopping, nothing left
            self._commit(batch)
            for write in batch:
                if write.done is not None:
                    write.done.release()
                    continue
                assert write.then is not None
                try:
                    write.then(write.error)
                except Exception:
                    log.exception("de-dupe write callback failed")
            if time.monotonic() >= self._next_cull:
                self._cull()

    def _cull(self) -> None:
        """Delete expired records, then the least recently stored while over the size limit."""
        self._next_cull = time.monotonic() + self._cull_interval
        try:
            with self._locked():
                self._cache.cull(retry=True)
        except (diskcache.Timeout, OSError) as exc:
            log.warning("de-dupe cull failed (retried later)", extra={"error": str(exc)})

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self._lock_fd < 0:
            yield
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _commit(self, batch: list[_Write]) -> None:
        try:
            with self._locked(), self._cache.transact(retry=True):
                for write in batch:
                    write.result = write.op(self._cache)
        except BaseException as exc:  # the transaction rolled back: none of the batch is stored
            for write in batch:
                write.result = None
                write.error = exc
