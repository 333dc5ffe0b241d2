"""The ledger thread: applies and commits decoded batches in submission order."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from sumflow.domain.ledger import DecodedBatch


class CommitFailed(RuntimeError):
    """The ledger thread failed a batch; the consumer thread rewinds to the committed state."""


class BatchCommitter:
    """Runs `process(batch)` for each submitted batch, in order, in a thread of its own.

    At most one batch waits while one commits (bounded memory, backpressure on polling). After a
    failure it refuses new batches until the consumer thread has taken the error and rewound
    (`discard` + LedgerConsumer's rewind): nothing after the failed batch is ever applied.
    """

    def __init__(self, process: Callable[[DecodedBatch], object]) -> None:
        self.process = process
        self._queue: queue.Queue[DecodedBatch | None] = queue.Queue(maxsize=1)
        self._lock = threading.Lock()
        self._busy = 0  # batches submitted and not yet finished
        self._done = threading.Condition(self._lock)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ledger", daemon=True)
        self._thread.start()

    def submit(self, batch: DecodedBatch) -> None:
        self.raise_failure()
        with self._lock:
            self._busy += 1
        self._queue.put(batch)

    def idle(self) -> bool:
        with self._lock:
            return self._busy == 0

    def failed(self) -> bool:
        with self._lock:
            return self._failure is not None

    def raise_failure(self) -> None:
        with self._lock:
            failure = self._failure
        if failure is not None:
            raise CommitFailed(str(failure)) from failure

    def take_failure(self) -> BaseException | None:
        with self._lock:
            failure, self._failure = self._failure, None
        if isinstance(failure, Exception):
            return failure
        return None

    def discard(self) -> None:
        """Drop the queued batch and wait for the one in progress: afterwards the ledger thread is idle."""
        try:
            while True:
                if self._queue.get_nowait() is not None:
                    with self._lock:
                        self._busy -= 1
                        self._done.notify_all()
        except queue.Empty:
            pass
        with self._done:
            self._done.wait_for(lambda: self._busy == 0 or not self._thread.is_alive())

    def close(self) -> None:
        """Commit what was submitted (unless a batch failed), then stop the thread."""
        self._queue.put(None)
        self._thread.join()
        self.take_failure()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            try:
                with self._lock:
                    failed = self._failure is not None
                if not failed:  # a batch after a failed one is never applied
                    self.process(batch)
            except BaseException as exc:  # handed to the consumer thread
                with self._lock:
                    self._failure = exc
            finally:
                with self._lock:
                    self._busy -= 1
                    self._done.notify_all()
