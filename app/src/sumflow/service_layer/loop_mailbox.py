"""Hand results from worker threads to an asyncio loop with one wake-up per burst, not per result.

The adder's de-dupe writer commits a batch of claims at once and kafka-python's sender thread
completes a whole produce batch at once. `loop.call_soon_threadsafe` per result writes the loop's
self-pipe and takes its lock every time (profiled at ~10% of the adder's event-loop thread);
`LoopMailbox.post` appends to a list and wakes the loop only when the list was empty, so a batch
of N results costs one wake-up. Results run on the loop in the order they were posted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class LoopMailbox:
    """Run `fn(*args)` on `loop`, posted from any thread; one loop wake-up per non-empty burst."""

    __slots__ = ("_lock", "_loop", "_pending", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._scheduled = False

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Queue `fn(*args)` for the loop thread (from any thread, the loop's own included)."""
        with self._lock:
            self._pending.append((fn, args))
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        for fn, args in batch:
            try:
                fn(*args)
            except Exception:
                log.exception("mailbox callback failed")


def settle_future(future: asyncio.Future[Any], value: object, error: BaseException | None) -> None:
    """On the loop: resolve `future` with `value` or `error`, unless it is already done (cancelled)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
