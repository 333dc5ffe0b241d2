"""Random SIGKILLs of the adder mid-stream: the client retries every unanswered call with its id;
nothing is lost (an acknowledged call was in Kafka) and nothing counts twice (the de-dupe store and
the accumulator's window absorb a re-publish after a kill between Kafka's ack and the store write)."""

from __future__ import annotations

import random
import time

from tests.support.chaos import FaultStream, audit_counts, judge, plan_requests, report, run_with_faults

SIZES = {"short": (2_000, 2), "long": (20_000, 20)}


def test_adder_sigkills_with_client_retries_stay_exact(size, kafka_broker, deploy):
    count, kills = SIZES[size]
    rng = random.Random(f"adder-{size}")
    d = deploy(kafka_broker.bootstrap, lambda name, p: kafka_broker.create_topic(name, partitions=p))
    d.adder.start()
    d.accumulator.start()
    d.accumulator.wait_ready()
    requests = plan_requests(count, seed=23)
    stream = FaultStream(d.adder.target, requests, window=48)
    started = time.monotonic()

    def kill(_: int) -> None:
        time.sleep(rng.uniform(0, 0.2))
        d.adder.kill()
        time.sleep(rng.uniform(0, 0.5))  # calls fail UNAVAILABLE meanwhile: the client retries them
        d.adder.start()

    outcome = run_with_faults(stream, rng.sample(range(count // 10, count - count // 10), kills), kill, timeout=900)
    assert not outcome.unexpected, outcome.unexpected[:10]
    assert len(outcome.acknowledged) == count
    assert outcome.retries > 0, "the kills interrupted calls in flight"
    final = d.accumulator.wait_applied(count)
    assert d.accumulator.terminate() == 0
    verdict = judge(requests, outcome, final, audit_counts(d.state_dir))
    report(
        "adder SIGKILL + client retries",
        faults=d.adder.kills,
        sent=outcome.sent,
        acknowledged=len(outcome.acknowledged),
        verdict=verdict,
        wall=time.monotonic() - started,
    )
    assert d.adder.kills == kills
    verdict.assert_exact()
