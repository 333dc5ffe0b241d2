"""The adder's persistent de-duplication store: a `diskcache.Cache` keyed by request id.

Each record is a `DedupeRecord` (stored as a plain tuple) with an expiry of the configured TTL.
Every operation that must be atomic is one SQLite transaction, so several adder processes can
share one directory:
- `claim` = `Cache.add`: only the first call for an id creates its pending record;
- `replace` / `release` compare the stored record with the one the caller saw inside `transact()`.
Eviction is `least-recently-stored`: expired records are culled first, reads never write.

Writers queue on a thread lock (plus an flock on `<dir>/writer.lock` when several processes share
the directory) before touching SQLite: with dozens of gRPC threads SQLite's own busy handler would
make them sleep and retry in steps of up to 100 ms; a queue costs microseconds. Reads (WAL) never
wait for writers. Expired and over-size records are culled when an id is claimed (one indexed query),
not again when it completes.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import diskcache

from sumflow.domain.idempotency import DedupeRecord, RecordState


class DedupeUnavailable(RuntimeError):
    """The store could not be read or written in time (locked or I/O error)."""


class DedupeStore:
    def __init__(
        self,
        directory: Path,
        *,
        ttl_seconds: float,
        size_limit_bytes: int,
        lock_timeout_seconds: float = 5.0,
        shared_between_processes: bool = False,
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
        self._thread_lock = threading.Lock()
        self._cull_limit = int(self._cache.cull_limit)
        self._lock_fd = -1
        if shared_between_processes:
            self._lock_fd = os.open(directory / "writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextmanager
    def _writer(self) -> Iterator[None]:
        with self._thread_lock:
            if self._lock_fd < 0:
                yield
                return
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def claim(self, request_id: str, record: DedupeRecord) -> bool:
        """Store `record` if the id is unknown (atomic); False when a record already exists."""
        try:
            with self._writer():
                return bool(self._cache.add(request_id, record.to_tuple(), expire=self.ttl_seconds, retry=True))
        except (diskcache.Timeout, OSError) as exc:
            raise DedupeUnavailable(f"de-dupe store: {exc}") from exc

    def get(self, request_id: str) -> DedupeRecord | None:
        try:
            raw = self._cache.get(request_id, retry=True)
        except (diskcache.Timeout, OSError) as exc:
            raise DedupeUnavailable(f"de-dupe store: {exc}") from exc
        return _decode(raw)

    def replace(self, request_id: str, expected: DedupeRecord, new: DedupeRecord) -> bool:
        """Write `new` only if the stored record is still `expected` (compare-and-set)."""
        try:
            with self._writer(), self._cache.transact(retry=True):
                if _decode(self._cache.get(request_id)) != expected:
                    return False
                self._cache.set(request_id, new.to_tuple(), expire=self.ttl_seconds)
                return True
        except (diskcache.Timeout, OSError) as exc:
            raise DedupeUnavailable(f"de-dupe store: {exc}") from exc

    def complete(self, request_id: str, record: DedupeRecord) -> None:
        """Store the final (done) record: the id's answer for the rest of the TTL."""
        try:
            with self._writer():
                self._cache.cull_limit = 0  # not persisted; only this write skips the cull
                try:
                    self._cache.set(request_id, record.to_tuple(), expire=self.ttl_seconds, retry=True)
                finally:
                    self._cache.cull_limit = self._cull_limit
        except (diskcache.Timeout, OSError) as exc:
            raise DedupeUnavailable(f"de-dupe store: {exc}") from exc

    def release(self, request_id: str, owner: str) -> bool:
        """Delete the pending record if `owner` still owns it (so a retry with the id can publish)."""
        try:
            with self._writer(), self._cache.transact(retry=True):
                current = _decode(self._cache.get(request_id))
                if current is None or current.owner != owner or current.state is not RecordState.PENDING:
                    return False
                return bool(self._cache.delete(request_id))
        except (diskcache.Timeout, OSError) as exc:
            raise DedupeUnavailable(f"de-dupe store: {exc}") from exc

    def volume_bytes(self) -> int:
        return int(self._cache.volume())

    def close(self) -> None:
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
