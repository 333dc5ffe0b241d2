"""Fault runs: drive requests while faults are injected, then judge the accumulator's result against
the exact expected values.

    requests = plan_requests(5000, seed=7, big_share=0.05, upper_share=0.2)
    run = FaultRun(adder.target, accumulator, state_dir, requests)
    run.with_faults(points, inject, timeout=600)   # inject(i) when the i-th point of acknowledgements is reached
    verdict = run.finish("accumulator SIGKILL", faults=10)   # prints and records the table row
    verdict.assert_exact()

    run = CrashRun.start(adder.target, 3000, kills=10, window=4, deadline_s=300)   # KillGate-paced

Expected values: every acknowledged request exactly once; the total is the exact sum of their results
(an unacknowledged call that reached Kafka may be applied once too).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.driver import KillGate, PlannedRequest, RequestStream, StreamOutcome, plan_requests
from harness.processes import AccumulatorProcess


def run_with_faults(
    stream: RequestStream,
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
        stream = RequestStream(self.adder_target, self.requests, window=self.window)
        self.outcome.merge(run_with_faults(stream, points, inject, timeout=timeout))
        return self.outcome

    def send(self, requests: Sequence[PlannedRequest], *, timeout: float = 300) -> StreamOutcome:
        """Send a part of the requests (blocking), each retried until acknowledged or `timeout`."""
        self.outcome.merge(RequestStream(self.adder_target, requests, window=self.window).run(timeout=timeout))
        return self.outcome

    def finish(self, scenario: str, *, faults: int) -> Verdict:
        """Every request acknowledged, the accumulator caught up and stopped cleanly, the audit log
        read at rest: the verdict, reported as a summary row (the caller asserts it exact)."""
        out = self.outcome
        assert not out.unexpected, out.unexpected[:10]
        assert len(out.acknowledged) == len(self.requests), "every request is acknowledged in the end (with retries)"
        final = self.accumulator.wait_applied(len(self.requests))
        assert self.accumulator.stop(timeout=60) == 0  # a clean stop, then the audit is read at rest
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


@dataclass
class CrashRun:
    """The e2e crash tests' stream: a fresh random seed (printed, to replay a failure), an rng for
    the kill timing, and the request stream paced by a KillGate so the kills land mid-stream.

        run = CrashRun.start(stack.adder.target, 3000, kills=10, window=4, deadline_s=300)
        while run.gate.done < run.gate.kills: ...kill something...; run.gate.killed()
        run.join(360)                        # every request answered (after retries)
        run.assert_exact(stack.accumulator)  # total and count of the distinct requests, exactly
    """

    rng: random.Random
    stream: RequestStream
    gate: KillGate
    runner: threading.Thread

    @classmethod
    def start(cls, target: str, count: int, *, kills: int, window: int, deadline_s: float) -> CrashRun:
        """At most `window` calls in flight (one RequestStream), retried until `deadline_s`."""
        seed = random.randrange(1 << 32)
        print(f"seed={seed}")
        stream = RequestStream(target, plan_requests(count, seed), window=window, call_timeout=20)
        gate = KillGate(count, kills)
        runner = stream.run_in_background(deadline_s, gate=gate)
        return cls(random.Random(seed), stream, gate, runner)

    def join(self, timeout: float, diagnostics: Callable[[], str] = str) -> None:
        """Wait for the stream; it must have finished, and every request must have its answer."""
        self.runner.join(timeout)
        print(self.stream.summary())
        assert not self.runner.is_alive(), f"request stream did not finish in time\n{diagnostics()}"
        self.stream.assert_all_answered()

    def assert_exact(self, accumulator: AccumulatorProcess, timeout: float = 120) -> Mapping[str, int]:
        final = accumulator.wait_applied(self.stream.count, timeout=timeout)
        assert final == {"total": self.stream.expected_total, "applied": self.stream.count}
        return final
