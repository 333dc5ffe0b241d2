"""Restart the Kafka broker (SIGKILL, then start on the same data directory) once mid-stream, on a
broker of this test's own: clients retry with their ids, and the total has no loss and no double
count."""

from __future__ import annotations

import random
import time

from tests.support.broker import KafkaBroker
from tests.support.request_stream import KillGate, RequestStream
from tests.support.services import sumflow_stack

REQUESTS = 1500


def test_broker_killed_and_restarted_mid_stream_loses_nothing_and_counts_nothing_twice(tmp_path) -> None:
    seed = random.randrange(1 << 32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    stream = RequestStream.random(REQUESTS, seed)
    gate = KillGate(REQUESTS, 1)
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    try:
        with sumflow_stack(broker.bootstrap, tmp_path / "services", partitions=3) as stack:
            runner = stream.run_in_background(stack.adder.target, threads=4, deadline_s=180, gate=gate)
            time.sleep(rng.uniform(0.5, 2.0))
            answered_at_kill = stream.answered
            broker.kill()
            gate.killed()
            time.sleep(rng.uniform(0.0, 2.0))
            down_since = time.monotonic()
            broker.start()
            print(f"broker back after {time.monotonic() - down_since:.1f}s; answered at kill: {answered_at_kill}")
            runner.join(240)
            print(stream.summary())
            assert not runner.is_alive(), (
                f"request stream did not finish in time\n--- adder ---\n{stack.adder.log_tail(30)}"
                f"\n--- accumulator ---\n{stack.accumulator.log_tail(30)}"
            )
            stream.assert_all_answered()
            assert answered_at_kill < REQUESTS
            # Both services lived through the outage (no crash, no restart by the test).
            assert stack.adder.is_alive() and stack.accumulator.is_alive()
            assert (stack.adder.starts, stack.accumulator.starts) == (1, 1)
            final = stack.accumulator.wait_applied(REQUESTS, timeout=180)
            assert final == {"total": stream.expected_total, "applied": REQUESTS}
    finally:
        broker.stop()
