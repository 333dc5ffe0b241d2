"""The request driver: a bounded stream of distinct AddNumbers requests, each retried with its own id
until the adder answers, so the exact expected total is known whatever crashes meanwhile.

    requests = plan_requests(3000, seed)
    stream = RequestStream(adder.target, requests, window=32)
    outcome = stream.run(timeout=600)           # blocking; stream.acknowledged is live progress
    runner = stream.run_in_background(timeout=240, gate=KillGate(3000, kills=3))
    ... kill things, gate.killed() after each ...
    runner.join(); stream.assert_all_answered()

One gRPC channel carries at most `window` calls in flight. A call that ends UNAVAILABLE /
DEADLINE_EXCEEDED / CANCELLED (the adder died, Kafka is down) is retried with the same id and numbers
after a jittered exponential backoff until it is acknowledged or the stream's time is up; any other
status, or a wrong answer, is an error of the service and is recorded as unexpected.
"""

from __future__ import annotations

import heapq
import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from sumflow.v1 import sum_pb2, sum_pb2_grpc

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})
CHANNEL_OPTIONS = [
    # the adder comes back within seconds after a SIGKILL: reconnect fast, not after minutes
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),  # the driver retries itself, with the id, and counts it
]
MAX_ABS_NUMBER = 2**61  # any two of these sum inside int64


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    request_id: str
    first: int
    second: int

    @property
    def result(self) -> int:
        return self.first + self.second

    def message(self) -> sum_pb2.AddNumbersRequest:
        return sum_pb2.AddNumbersRequest(request_id=self.request_id, first_number=self.first, second_number=self.second)


def plan_requests(
    count: int, seed: int, *, magnitude: int = 10**9, big_share: float = 0.0, upper_share: float = 0.0
) -> list[PlannedRequest]:
    """`count` distinct random ids with operands in ±`magnitude`; `big_share` of them near ±2**61 and
    `upper_share` of the ids sent in upper case (the adder answers with the canonical lower case)."""
    rng = random.Random(seed)
    planned = []
    for _ in range(count):
        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        bound = MAX_ABS_NUMBER if big_share and rng.random() < big_share else magnitude
        first, second = rng.randint(-bound, bound), rng.randint(-bound, bound)
        if upper_share and rng.random() < upper_share:
            rid = rid.upper()
        planned.append(PlannedRequest(rid, first, second))
    return planned


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


@dataclass
class StreamOutcome:
    sent: int = 0  # distinct requests sent at least once
    attempts: int = 0  # calls made, retries included
    retries: int = 0
    acknowledged: dict[str, PlannedRequest] = field(default_factory=dict)  # canonical id -> request
    duplicate_answers: int = 0  # OK answers with duplicate=true (a retry of an id that was published)
    retry_codes: Counter[str] = field(default_factory=Counter)
    unexpected: list[tuple[str, str, str]] = field(default_factory=list)  # (id, code, details)
    longest_outage: float = 0.0  # longest time without any acknowledgement while calls were pending
    wall: float = 0.0

    def merge(self, other: StreamOutcome) -> None:
        """Add the outcome of another stream over other requests of the same run."""
        self.sent += other.sent
        self.attempts += other.attempts
        self.retries += other.retries
        self.acknowledged.update(other.acknowledged)
        self.duplicate_answers += other.duplicate_answers
        self.retry_codes.update(other.retry_codes)
        self.unexpected += other.unexpected
        self.longest_outage = max(self.longest_outage, other.longest_outage)
        self.wall += other.wall


class RequestStream:
    """One client stream over a gRPC channel with a bounded window of calls in flight."""

    def __init__(
        self,
        target: str,
        requests: Sequence[PlannedRequest],
        *,
        window: int = 32,
        call_timeout: float = 15.0,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
    ) -> None:
        self.target = target
        self.requests = list(requests)
        self.window = window
        self.call_timeout = call_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.outcome = StreamOutcome()
        self.stop = threading.Event()

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def expected_total(self) -> int:
        return sum(r.result for r in self.requests)

    @property
    def acknowledged(self) -> int:
        return len(self.outcome.acknowledged)

    def run(self, timeout: float, gate: Callable[[int], None] | None = None) -> StreamOutcome:
        """Send everything and retry until each request is acknowledged, `timeout` passes, or stop is
        set. `gate(index)` runs before the first send of request `index` (pacing, see KillGate)."""
        out = self.outcome
        started = time.monotonic()
        give_up = started + timeout
        fresh = list(reversed(list(enumerate(self.requests))))
        retry_at: list[tuple[float, int, PlannedRequest, int]] = []  # (when, seq, request, attempt)
        done: queue.SimpleQueue = queue.SimpleQueue()
        inflight = 0
        seq = 0
        last_ack = started
        channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        stub = sum_pb2_grpc.SumServiceStub(channel)
        try:
            while (fresh or retry_at or inflight) and time.monotonic() < give_up and not self.stop.is_set():
                now = time.monotonic()
                while inflight < self.window:
                    if retry_at and retry_at[0][0] <= now:
                        _, _, req, attempt = heapq.heappop(retry_at)
                        out.retries += 1
                    elif fresh:
                        index, req = fresh.pop()
                        attempt = 0
                        if gate is not None:
                            gate(index)
                        out.sent += 1
                    else:
                        break
                    future = stub.AddNumbers.future(req.message(), timeout=self.call_timeout)
                    future.add_done_callback(lambda f, r=req, a=attempt: done.put((r, a, f)))
                    inflight += 1
                    out.attempts += 1
                try:
                    req, attempt, future = done.get(timeout=0.05)
                except queue.Empty:
                    if inflight or retry_at:
                        out.longest_outage = max(out.longest_outage, time.monotonic() - last_ack)
                    continue
                inflight -= 1
                code = future.code()
                if code is grpc.StatusCode.OK:
                    last_ack = time.monotonic()
                    self._acknowledge(req, future.result())
                elif code in RETRYABLE:
                    out.retry_codes[code.name] += 1
                    delay = min(self.max_backoff, self.backoff * (2 ** min(attempt, 8))) * random.uniform(0.5, 1.0)
                    seq += 1
                    heapq.heappush(retry_at, (time.monotonic() + delay, seq, req, attempt + 1))
                else:
                    out.unexpected.append((req.request_id, code.name, future.details() or ""))
            # let the calls still in flight finish so none is left unaccounted for
            while inflight:
                req, attempt, future = done.get(timeout=self.call_timeout + 5)
                inflight -= 1
                if future.code() is grpc.StatusCode.OK:
                    self._acknowledge(req, future.result())
        finally:
            channel.close()
            out.wall = time.monotonic() - started
        return out

    def run_in_background(self, timeout: float, gate: Callable[[int], None] | None = None) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(timeout, gate), name="request-stream", daemon=True)
        thread.start()
        return thread

    def _acknowledge(self, req: PlannedRequest, reply: sum_pb2.AddNumbersResponse) -> None:
        out = self.outcome
        canonical = req.request_id.lower()
        if reply.request_id != canonical or reply.result != req.result:
            out.unexpected.append((req.request_id, "WRONG_ANSWER", f"{reply.request_id} {reply.result}"))
            return
        out.duplicate_answers += int(reply.duplicate)
        out.acknowledged[canonical] = req

    def assert_all_answered(self) -> None:
        assert self.outcome.unexpected == [], self.outcome.unexpected[:20]
        missing = [r.request_id for r in self.requests if r.request_id.lower() not in self.outcome.acknowledged]
        assert missing == [], f"{len(missing)} requests never answered, e.g. {missing[:5]}"

    def summary(self) -> str:
        out = self.outcome
        return (
            f"requests={self.count} answered={len(out.acknowledged)} retries={out.retries} {dict(out.retry_codes)} "
            f"answered-as-duplicate={out.duplicate_answers} unexpected={len(out.unexpected)}"
        )
