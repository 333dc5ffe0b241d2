"""A bounded stream of distinct AddNumbers requests sent by a few threads, each retried with its
own id until the adder answers, so the exact expected total is known whatever crashes meanwhile.

    stream = RequestStream.random(3000, seed)
    runner = stream.run_in_background(adder.target, threads=4, deadline_s=240)
    ... kill things ...
    runner.join(); stream.assert_all_answered()
    assert accumulator.total() == {"total": stream.expected_total, "applied": stream.count}
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from tests.support.grpc_client import AdderClient

# Codes a client may retry with the same id: the call may or may not have been recorded.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


class KillGate:
    """Paces a stream so `kills` faults are spread over it: request i waits until enough faults
    have happened, and the last 1/(kills+1) of the stream is sent only after the last one.
    Pass it as `gate=` to RequestStream.run; call `.killed()` after each fault."""

    def __init__(self, total: int, kills: int, max_wait_s: float = 120.0) -> None:
        self.total = total
        self.kills = kills
        self.done = 0
        self.max_wait_s = max_wait_s
        self.cond = threading.Condition()

    def __call__(self, index: int) -> None:
        needed = min(self.kills, index * (self.kills + 1) // self.total)
        with self.cond:
            self.cond.wait_for(lambda: self.done >= needed, timeout=self.max_wait_s)

    def killed(self) -> None:
        with self.cond:
            self.done += 1
            self.cond.notify_all()


@dataclass(frozen=True)
class Request:
    request_id: str
    first: int
    second: int

    @property
    def result(self) -> int:
        return self.first + self.second


@dataclass
class RequestStream:
    requests: list[Request]
    answers: dict[str, tuple[int, bool]] = field(default_factory=dict)  # id -> (result, duplicate)
    failures: list[str] = field(default_factory=list)  # non-retryable outcomes: a bug
    retries: int = 0
    retry_codes: dict[str, int] = field(default_factory=dict)
    sent: int = 0  # index of the next request to hand out
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def random(cls, count: int, seed: int, magnitude: int = 10**9) -> RequestStream:
        rng = random.Random(seed)
        requests = [
            Request(
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                rng.randint(-magnitude, magnitude),
                rng.randint(-magnitude, magnitude),
            )
            for _ in range(count)
        ]
        return cls(requests)

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def expected_total(self) -> int:
        return sum(r.result for r in self.requests)

    @property
    def answered(self) -> int:
        with self._lock:
            return len(self.answers)

    def _next(self) -> tuple[int, Request] | None:
        with self._lock:
            if self.sent >= len(self.requests):
                return None
            index = self.sent
            self.sent += 1
            return index, self.requests[index]

    def _send_one(self, client: AdderClient, request: Request, give_up_at: float) -> None:
        backoff = 0.05
        while True:
            try:
                reply = client.add(request.request_id, request.first, request.second, timeout=20)
            except grpc.RpcError as exc:
                code = exc.code()
                if code in RETRYABLE and time.monotonic() < give_up_at:
                    with self._lock:
                        self.retries += 1
                        self.retry_codes[code.name] = self.retry_codes.get(code.name, 0) + 1
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
                with self._lock:
                    self.failures.append(f"{request.request_id}: {code.name} {exc.details()}")
                return
            with self._lock:
                if reply.result != request.result or reply.request_id != request.request_id:
                    self.failures.append(f"{request.request_id}: wrong answer {reply}")
                self.answers[request.request_id] = (reply.result, reply.duplicate)
            return

    def run(
        self,
        target: str,
        threads: int = 4,
        deadline_s: float = 240.0,
        gate: Callable[[int], None] | None = None,
        pause_s: float = 0.0,
    ) -> None:
        """Send every request (blocking). `gate(index)` runs before each send (pacing hooks);
        `pause_s` is a sleep between one thread's calls."""
        give_up_at = time.monotonic() + deadline_s

        def worker() -> None:
            with AdderClient(target) as client:
                while (item := self._next()) is not None:
                    index, request = item
                    if gate is not None:
                        gate(index)
                    self._send_one(client, request, give_up_at)
                    if pause_s:
                        time.sleep(pause_s)

        workers = [threading.Thread(target=worker, name=f"stream-{i}", daemon=True) for i in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(deadline_s + 60)

    def run_in_background(self, target: str, **kwargs: object) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(target,), kwargs=kwargs, name="stream", daemon=True)
        thread.start()
        return thread

    def assert_all_answered(self) -> None:
        assert self.failures == [], self.failures[:20]
        missing = [r.request_id for r in self.requests if r.request_id not in self.answers]
        assert missing == [], f"{len(missing)} requests never answered, e.g. {missing[:5]}"

    def summary(self) -> str:
        duplicates = sum(1 for _, dup in self.answers.values() if dup)
        return (
            f"requests={self.count} answered={len(self.answers)} retries={self.retries} {self.retry_codes} "
            f"answered-as-duplicate={duplicates} failures={len(self.failures)}"
        )
