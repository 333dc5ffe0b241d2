"""Random SIGKILLs of the accumulator during a request stream, restarted each time: exact total."""

from __future__ import annotations

import random
import time

from tests.support.chaos import FaultStream, audit_counts, judge, plan_requests, report, run_with_faults

# (requests, kills): the long run, and 5-6% of it for every `make test`
SIZES = {"short": (5_000, 6), "long": (100_000, 100)}


def test_accumulator_sigkills_lose_nothing_and_count_nothing_twice(size, kafka_broker, deploy):
    count, kills = SIZES[size]
    rng = random.Random(f"acc-{size}")
    d = deploy(kafka_broker.bootstrap, lambda name, p: kafka_broker.create_topic(name, partitions=p))
    d.adder.start()
    d.accumulator.start()
    d.accumulator.wait_ready()
    requests = plan_requests(count, seed=11)
    stream = FaultStream(d.adder.target, requests)
    # kill points spread over the stream, by acknowledged count; the rest after it, during catch-up
    points = rng.sample(range(count // 20, count), kills)
    started = time.monotonic()

    def kill(_: int) -> None:
        time.sleep(rng.uniform(0, 0.3))  # at a random moment of whatever batch is in progress
        d.accumulator.kill()
        d.accumulator.start()
        if rng.random() < 0.7:  # otherwise the next kill may land during start-up or seek
            d.accumulator.wait_ready()

    run_with_faults(stream, points, kill, timeout=count / 20 + 600)
    outcome = stream.outcome
    assert not outcome.unexpected, outcome.unexpected[:10]
    assert len(outcome.acknowledged) == count, "every request is acknowledged in the end (with retries)"
    d.accumulator.wait_ready()
    final = d.accumulator.wait_applied(count)
    assert d.accumulator.terminate() == 0  # a clean stop, then the audit is read at rest
    verdict = judge(requests, outcome, final, audit_counts(d.state_dir))
    report(
        "accumulator SIGKILL + restart",
        faults=d.accumulator.kills,
        sent=outcome.sent,
        acknowledged=len(outcome.acknowledged),
        verdict=verdict,
        wall=time.monotonic() - started,
    )
    assert d.accumulator.kills == kills
    verdict.assert_exact()
