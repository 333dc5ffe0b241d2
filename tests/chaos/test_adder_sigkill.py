"""Random SIGKILLs of the adder mid-stream: the client retries every unanswered call with its id;
nothing is lost (an acknowledged call was in Kafka) and nothing counts twice (the de-dupe store and
the accumulator's window absorb a re-publish after a kill between Kafka's ack and the store write)."""

from __future__ import annotations

import random
import time

SIZES = {"short": (2_000, 2), "long": (20_000, 20)}


def test_adder_sigkills_with_client_retries_stay_exact(size, kafka_broker, deploy):
    count, kills = SIZES[size]
    rng = random.Random(f"adder-{size}")
    d = deploy(kafka_broker)
    run = d.start_run(count, seed=23, window=48)

    def kill(_: int) -> None:
        time.sleep(rng.uniform(0, 0.2))
        d.adder.kill()
        time.sleep(rng.uniform(0, 0.5))  # calls fail UNAVAILABLE meanwhile: the client retries them
        d.adder.start()

    outcome = run.with_faults(rng.sample(range(count // 10, count - count // 10), kills), kill, timeout=900)
    verdict = run.finish("adder SIGKILL + client retries", faults=d.adder.kills)
    assert d.adder.kills == kills
    assert outcome.retries > 0, "the kills interrupted calls in flight"
    verdict.assert_exact()
