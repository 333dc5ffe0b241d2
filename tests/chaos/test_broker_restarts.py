"""Broker stops and restarts mid-stream (SIGTERM and SIGKILL alternately) on a broker of the test's
own: the adder answers UNAVAILABLE while Kafka is gone, the client retries with the ids, the
accumulator reconnects and resumes from its own state: exact total."""

from __future__ import annotations

import random
import time
from pathlib import Path

from tests.support.broker import KafkaBroker
from tests.support.chaos import FaultStream, audit_counts, judge, plan_requests, report, run_with_faults

SIZES = {"short": (1_500, 2), "long": (10_000, 5)}


def test_broker_restarts_mid_stream_stay_exact(size, tmp_path: Path, deploy):
    count, restarts = SIZES[size]
    rng = random.Random(f"broker-{size}")
    broker = KafkaBroker(tmp_path / "kafka")
    try:
        broker.start()
        d = deploy(
            broker.bootstrap,
            lambda name, p: broker.create_topic(name, partitions=p),
            adder_extra={"SUMFLOW_PUBLISH_TIMEOUT_SECONDS": "5"},
        )
        d.adder.start()
        d.accumulator.start()
        d.accumulator.wait_ready()
        requests = plan_requests(count, seed=31)
        stream = FaultStream(d.adder.target, requests)
        kinds: list[str] = []
        started = time.monotonic()

        def restart(i: int) -> None:
            time.sleep(rng.uniform(0, 0.3))
            if i % 2 == 0:
                kinds.append("SIGTERM")
                broker.node.stop()  # controlled shutdown
            else:
                kinds.append("SIGKILL")
                broker.node.kill()
            time.sleep(rng.uniform(0.5, 2.0))  # down for a while: calls fail, the consumer retries
            broker.start()

        points = rng.sample(range(count // 10, count - count // 10), restarts)
        outcome = run_with_faults(stream, points, restart, timeout=count / 10 + 240)
        assert not outcome.unexpected, outcome.unexpected[:10]
        assert len(outcome.acknowledged) == count
        d.accumulator.wait_ready()
        final = d.accumulator.wait_applied(count)
        assert d.accumulator.terminate() == 0
        verdict = judge(requests, outcome, final, audit_counts(d.state_dir))
        report(
            "broker stop/restart (" + "+".join(sorted(set(kinds))) + ")",
            faults=len(kinds),
            sent=outcome.sent,
            acknowledged=len(outcome.acknowledged),
            verdict=verdict,
            wall=time.monotonic() - started,
        )
        assert len(kinds) == restarts and {"SIGTERM", "SIGKILL"} <= set(kinds)
        verdict.assert_exact()
    finally:
        broker.kill()  # the deploy fixture kills the services
