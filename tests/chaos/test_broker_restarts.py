"""Broker stops and restarts mid-stream (SIGTERM and SIGKILL alternately) on a broker of the test's
own: the adder answers UNAVAILABLE while Kafka is gone, the client retries with the ids, the
accumulator reconnects and resumes from its own state: exact total."""

from __future__ import annotations

import random
import time

SIZES = {"short": (1_500, 2), "long": (10_000, 5)}


def test_broker_restarts_mid_stream_stay_exact(size, own_broker, deploy):
    count, restarts = SIZES[size]
    rng = random.Random(f"broker-{size}")
    d = deploy(own_broker, adder_extra={"SUMFLOW_PUBLISH_TIMEOUT_SECONDS": "5"})
    run = d.start_run(count, seed=31)
    kinds: list[str] = []

    def restart(i: int) -> None:
        time.sleep(rng.uniform(0, 0.3))
        if i % 2 == 0:
            kinds.append("SIGTERM")
            own_broker.node.stop()  # controlled shutdown
        else:
            kinds.append("SIGKILL")
            own_broker.node.kill()
        time.sleep(rng.uniform(0.5, 2.0))  # down for a while: calls fail, the consumer retries
        own_broker.start()

    run.with_faults(rng.sample(range(count // 10, count - count // 10), restarts), restart, timeout=count / 10 + 240)
    d.accumulator.wait_ready()  # reconnected and committing again
    verdict = run.finish("broker stop/restart (" + "+".join(sorted(set(kinds))) + ")", faults=len(kinds))
    assert len(kinds) == restarts and {"SIGTERM", "SIGKILL"} <= set(kinds)
    verdict.assert_exact()
