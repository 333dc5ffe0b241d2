"""Random SIGKILLs of the accumulator during a request stream, restarted each time: exact total."""

from __future__ import annotations

import random
import time

# (requests, kills): the long run, and 5-6% of it for every `make test`
SIZES = {"short": (5_000, 6), "long": (100_000, 100)}


def test_accumulator_sigkills_lose_nothing_and_count_nothing_twice(size, kafka_broker, deploy):
    count, kills = SIZES[size]
    rng = random.Random(f"acc-{size}")
    d = deploy(kafka_broker)
    run = d.start_run(count, seed=11)

    def kill(_: int) -> None:
        time.sleep(rng.uniform(0, 0.3))  # at a random moment of whatever batch is in progress
        d.accumulator.kill()
        d.accumulator.start(wait=False)
        d.accumulator.wait_listening()
        if rng.random() < 0.7:  # otherwise the next kill may land during start-up or seek
            d.accumulator.wait_ready()

    # kill points spread over the stream, by acknowledged count; the rest after it, during catch-up
    run.with_faults(rng.sample(range(count // 20, count), kills), kill, timeout=count / 20 + 600)
    d.accumulator.wait_ready()  # the last kill may have landed during catch-up
    verdict = run.finish("accumulator SIGKILL + restart", faults=d.accumulator.kills)
    assert d.accumulator.kills == kills
    verdict.assert_exact()
