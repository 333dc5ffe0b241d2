"""The fault-stream driver: send N AddNumbers calls with ids, retry every unanswered one with its id,
and judge the accumulator's result against the exact expected values.

    requests = plan_requests(5000, seed=7)
    stream = FaultStream(adder.target, requests)
    outcome = stream.run(timeout=600)          # blocking; stream.acknowledged is live progress
    verdict = judge(requests, outcome, acc.total(), audit_counts(state_dir))
    report("accumulator SIGKILL", faults=10, outcome=outcome, verdict=verdict)   # prints the table row
    verdict.assert_exact()

A call that ends UNAVAILABLE / DEADLINE_EXCEEDED / CANCELLED (the adder died, Kafka is down) is retried
with the same id and numbers after a short backoff until it is acknowledged or the stream's time is up;
any other status is an error of the service and is recorded as unexpected. Expected values: every
acknowledged request exactly once; the total is the exact sum of their results.
"""

from __future__ import annotations

import heapq
import json
import os
import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc

from sumflow.v1 import sum_pb2, sum_pb2_grpc
from tests.support.chaos_processes import AccumulatorProcess
from tests.support.request_stream import KillGate, RequestStream

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


def plan_requests(count: int, seed: int) -> list[PlannedRequest]:
    """`count` distinct ids with random numbers: mostly small, some near ±2**61, some negative."""
    rng = random.Random(seed)
    planned = []
    for _ in range(count):
        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if rng.random() < 0.05:
            first, second = rng.randint(-MAX_ABS_NUMBER, MAX_ABS_NUMBER), rng.randint(-MAX_ABS_NUMBER, MAX_ABS_NUMBER)
        else:
            first, second = rng.randint(-(10**9), 10**9), rng.randint(-(10**9), 10**9)
        planned.append(PlannedRequest(rid if rng.random() < 0.8 else rid.upper(), first, second))
    return planned


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


class FaultStream:
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
    def acknowledged(self) -> int:
        return len(self.outcome.acknowledged)

    def run(self, timeout: float) -> StreamOutcome:
        """Send everything and retry until each request is acknowledged, `timeout` passes, or stop is set."""
        out = self.outcome
        started = time.monotonic()
        give_up = started + timeout
        fresh = list(reversed(self.requests))
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
                        req, attempt = fresh.pop(), 0
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

    def _acknowledge(self, req: PlannedRequest, reply: sum_pb2.AddNumbersResponse) -> None:
        out = self.outcome
        canonical = req.request_id.lower()
        if reply.request_id != canonical or reply.result != req.result:
            out.unexpected.append((req.request_id, "WRONG_ANSWER", f"{reply.request_id} {reply.result}"))
            return
        out.duplicate_answers += int(reply.duplicate)
        out.acknowledged[canonical] = req


def run_with_faults(
    stream: FaultStream,
    points: Sequence[int],
    inject: Callable[[int], None],
    *,
    timeout: float,
) -> StreamOutcome:
    """Run the stream; call inject(i) when the i-th point (an acknowledged count) is reached.

    Points not reached when the stream ends are injected after it (during the services' catch-up).
    An exception in `inject` stops the stream and is raised here.
    """
    errors: list[BaseException] = []
    runner = threading.Thread(target=stream.run, args=(timeout,), name="fault-stream")

    def injector() -> None:
        try:
            for i, point in enumerate(sorted(points)):
                while stream.acknowledged < point and runner.is_alive():
                    time.sleep(0.01)
                inject(i)
        except BaseException as exc:
            errors.append(exc)
            stream.stop.set()

    chaos = threading.Thread(target=injector, name="fault-injector")
    runner.start()
    chaos.start()
    runner.join()
    chaos.join()
    if errors:
        raise errors[0]
    return stream.outcome


def audit_counts(state_dir: Path) -> Counter[str]:
    """request id -> how many times the accumulator's audit log says it was applied."""
    counts: Counter[str] = Counter()
    for path in sorted((state_dir / "audit").glob("audit-*.jsonl")):
        for line in path.read_bytes().splitlines():
            counts[json.loads(line)["request_id"]] += 1
    return counts


@dataclass
class Verdict:
    expected_total: int
    expected_applied: int
    total: int
    applied: int
    lost: list[str]  # acknowledged but never applied
    double_counted: int  # applications beyond the first of one id
    foreign: list[str]  # applied ids this stream never sent
    unacknowledged_applied: int  # sent, never acknowledged, applied once (allowed: it reached Kafka)
    audit_total: int

    def assert_exact(self) -> None:
        assert not self.lost, f"{len(self.lost)} acknowledged requests lost, e.g. {self.lost[:5]}"
        assert self.double_counted == 0, f"{self.double_counted} double-counted applications"
        assert not self.foreign, f"applied ids never sent: {self.foreign[:5]}"
        assert (self.total, self.applied) == (self.expected_total, self.expected_applied), self
        assert self.audit_total == self.total, f"audit sums to {self.audit_total}, /api/total says {self.total}"


def judge(
    requests: Iterable[PlannedRequest],
    outcome: StreamOutcome,
    api_total: Mapping[str, int],
    applied_counts: Mapping[str, int],
) -> Verdict:
    """Compare /api/total and the audit log with what the stream sent and got acknowledged."""
    by_id = {r.request_id.lower(): r for r in requests}
    acked = outcome.acknowledged
    lost = [rid for rid in acked if applied_counts.get(rid, 0) == 0]
    double = sum(n - 1 for n in applied_counts.values() if n > 1)
    foreign = [rid for rid in applied_counts if rid not in by_id]
    extra = [rid for rid in applied_counts if rid in by_id and rid not in acked]
    expected_ids = set(acked) | set(extra)  # an unacknowledged call may still have reached Kafka
    return Verdict(
        expected_total=sum(by_id[rid].result for rid in expected_ids),
        expected_applied=len(expected_ids),
        total=int(api_total["total"]),
        applied=int(api_total["applied"]),
        lost=lost,
        double_counted=double,
        foreign=foreign,
        unacknowledged_applied=len(extra),
        audit_total=sum(by_id[rid].result * n for rid, n in applied_counts.items() if rid in by_id),
    )


# -- the summary table ---------------------------------------------------------------------------

COLUMNS = ("scenario", "faults injected", "requests sent", "acknowledged", "applied", "lost", "double-counted", "wall")
RESULTS: list[dict[str, str]] = []  # rows of this pytest session, printed again at its end
RESULTS_FILE_ENV = "SUMFLOW_CHAOS_RESULTS"  # append each row as a JSON line to this file when set


def report(
    scenario: str,
    *,
    faults: str | int,
    sent: int,
    acknowledged: int,
    verdict: Verdict,
    wall: float,
) -> dict[str, str]:
    """Record, print and (optionally) persist one summary row."""
    row = {
        "scenario": scenario,
        "faults injected": str(faults),
        "requests sent": str(sent),
        "acknowledged": str(acknowledged),
        "applied": str(verdict.applied),
        "lost": str(len(verdict.lost)),
        "double-counted": str(verdict.double_counted),
        "wall": f"{wall:.1f}s",
    }
    RESULTS.append(row)
    print("\n" + format_table([row]))
    path = os.environ.get(RESULTS_FILE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
    return row


def format_table(rows: Sequence[Mapping[str, str]]) -> str:
    """A Markdown table (readable as plain text too)."""
    widths = [max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in COLUMNS]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(COLUMNS), rule, *(line([str(r.get(c, "")) for c in COLUMNS]) for r in rows)])


# -- the set-up and the end shared by every scenario ---------------------------------------------


@dataclass
class FaultRun:
    """One chaos scenario against a running adder + accumulator: the planned requests, what the
    streams sending them got back (merged), and the clock. Made by the chaos suite's `deploy`."""

    adder_target: str
    accumulator: AccumulatorProcess
    state_dir: Path
    requests: list[PlannedRequest]
    window: int = 32
    outcome: StreamOutcome = field(default_factory=StreamOutcome)
    started: float = field(default_factory=time.monotonic)

    def with_faults(self, points: Sequence[int], inject: Callable[[int], None], *, timeout: float) -> StreamOutcome:
        """Send every request while `inject(i)` runs at each point (see run_with_faults)."""
        stream = FaultStream(self.adder_target, self.requests, window=self.window)
        self.outcome.merge(run_with_faults(stream, points, inject, timeout=timeout))
        return self.outcome

    def send(self, requests: Sequence[PlannedRequest], *, timeout: float = 300) -> StreamOutcome:
        """Send a part of the requests (blocking), each retried until acknowledged or `timeout`."""
        self.outcome.merge(FaultStream(self.adder_target, requests, window=self.window).run(timeout=timeout))
        return self.outcome

    def finish(self, scenario: str, *, faults: int) -> Verdict:
        """Every request acknowledged, the accumulator caught up and stopped cleanly, the audit log
        read at rest: the verdict, reported as a summary row (the caller asserts it exact)."""
        out = self.outcome
        assert not out.unexpected, out.unexpected[:10]
        assert len(out.acknowledged) == len(self.requests), "every request is acknowledged in the end (with retries)"
        final = self.accumulator.wait_applied(len(self.requests))
        assert self.accumulator.terminate() == 0  # a clean stop, then the audit is read at rest
        verdict = judge(self.requests, out, final, audit_counts(self.state_dir))
        report(
            scenario,
            faults=faults,
            sent=out.sent,
            acknowledged=len(out.acknowledged),
            verdict=verdict,
            wall=time.monotonic() - self.started,
        )
        return verdict


class _AppliedCounter(Protocol):
    def wait_applied(self, applied: int, timeout: float = ...) -> Mapping[str, int]: ...


@dataclass
class CrashRun:
    """The e2e crash tests' stream: a fresh random seed (printed, to replay a failure), an rng for
    the kill timing, and the request stream paced by a KillGate so the kills land mid-stream.

        run = CrashRun.start(stack.adder.target, 3000, kills=10, threads=4, deadline_s=300)
        while run.gate.done < run.gate.kills: ...kill something...; run.gate.killed()
        run.join(360)                        # every request answered (after retries)
        run.assert_exact(stack.accumulator)  # total and count of the distinct requests, exactly
    """

    rng: random.Random
    stream: RequestStream
    gate: KillGate
    runner: threading.Thread

    @classmethod
    def start(cls, target: str, count: int, *, kills: int, threads: int, deadline_s: float) -> CrashRun:
        seed = random.randrange(1 << 32)
        print(f"seed={seed}")
        stream = RequestStream.random(count, seed)
        gate = KillGate(count, kills)
        runner = stream.run_in_background(target, threads=threads, deadline_s=deadline_s, gate=gate)
        return cls(random.Random(seed), stream, gate, runner)

    def join(self, timeout: float, diagnostics: Callable[[], str] = str) -> None:
        """Wait for the stream; it must have finished, and every request must have its answer."""
        self.runner.join(timeout)
        print(self.stream.summary())
        assert not self.runner.is_alive(), f"request stream did not finish in time\n{diagnostics()}"
        self.stream.assert_all_answered()

    def assert_exact(self, accumulator: _AppliedCounter, timeout: float = 120) -> Mapping[str, int]:
        final = accumulator.wait_applied(self.stream.count, timeout=timeout)
        assert final == {"total": self.stream.expected_total, "applied": self.stream.count}
        return final
