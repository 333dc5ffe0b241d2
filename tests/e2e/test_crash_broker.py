"""Restart the Kafka broker (SIGKILL, then start on the same data directory) once mid-stream, on a
broker of this test's own: clients retry with their ids, and the total has no loss and no double
count."""

from __future__ import annotations

import time

from harness.faults import CrashRun
from harness.kafka import KafkaBroker
from harness.stack import sumflow_stack

REQUESTS = 1500


def test_broker_killed_and_restarted_mid_stream_loses_nothing_and_counts_nothing_twice(tmp_path) -> None:
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    try:
        with sumflow_stack(broker.bootstrap, tmp_path / "services", partitions=3) as stack:
            run = CrashRun.start(stack.adder.target, REQUESTS, kills=1, window=4, deadline_s=180)
            time.sleep(run.rng.uniform(0.5, 2.0))
            answered_at_kill = run.stream.acknowledged
            broker.kill()
            run.gate.killed()
            time.sleep(run.rng.uniform(0.0, 2.0))
            down_since = time.monotonic()
            broker.start()
            print(f"broker back after {time.monotonic() - down_since:.1f}s; answered at kill: {answered_at_kill}")
            run.join(
                240,
                lambda: (
                    f"--- adder ---\n{stack.adder.log_tail(30)}\n--- accumulator ---\n{stack.accumulator.log_tail(30)}"
                ),
            )
            assert answered_at_kill < REQUESTS
            # Both services lived through the outage (no crash, no restart by the test).
            assert stack.adder.is_alive() and stack.accumulator.is_alive()
            assert (stack.adder.starts, stack.accumulator.starts) == (1, 1)
            run.assert_exact(stack.accumulator, timeout=180)
    finally:
        broker.stop()
