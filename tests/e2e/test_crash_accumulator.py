"""SIGKILL the accumulator at random moments (at least ten times) during a stream of thousands of
requests, restarting it each time: the final total and count are exactly those of the distinct
requests, so no event is lost and none is counted twice across crashes."""

from __future__ import annotations

import time

from harness.faults import CrashRun
from harness.kafka import KafkaBroker
from harness.stack import sumflow_stack

REQUESTS = 3000
KILLS = 10


def test_accumulator_sigkilled_ten_times_mid_stream_keeps_an_exact_total(kafka_broker: KafkaBroker, tmp_path) -> None:
    with sumflow_stack(
        kafka_broker.bootstrap,
        tmp_path,
        partitions=3,
        accumulator_env={"SUMFLOW_MAX_POLL_RECORDS": "200"},  # small batches: more commits to interrupt
    ) as stack:
        acc = stack.accumulator
        run = CrashRun.start(stack.adder.target, REQUESTS, kills=KILLS, window=4, deadline_s=300)
        rng = run.rng
        started = time.monotonic()
        kill_log = []
        while run.gate.done < KILLS:
            time.sleep(rng.uniform(0.05, 1.2))
            phase = "serving"
            if rng.random() < 0.25:
                # Sometimes kill it while it is still loading its state / assigning partitions.
                acc.kill()
                acc.start(wait=False)
                time.sleep(rng.uniform(0.0, 1.0))
                phase = "starting"
            applied_before = _applied_or_none(acc)
            acc.kill()
            kill_log.append((round(time.monotonic() - started, 2), phase, applied_before, run.stream.acknowledged))
            run.gate.killed()
            time.sleep(rng.uniform(0.0, 0.5))  # events pile up while it is down
            acc.start(timeout=90)
        run.join(360)
        print("kills (t, phase, applied, answered):", kill_log)
        assert len(kill_log) >= KILLS
        # The kills happened during the stream, not after it.
        assert kill_log[-1][3] < REQUESTS
        final = run.assert_exact(acc)
        # One more restart from the committed state changes nothing.
        acc.kill_and_restart()
        time.sleep(1.0)
        assert acc.total() == final


def _applied_or_none(acc) -> int | None:
    try:
        return acc.total()["applied"]
    except Exception:
        return None
