"""SIGKILL the adder mid-stream (three times), restart it on the same de-dupe directory, and let
every client retry each unanswered request with its own id: the total stays exact. An adder that
died between Kafka's ack and its de-dupe write re-publishes on the retry; the accumulator's
applied-id window drops that second event."""

from __future__ import annotations

import time
from collections import Counter

from harness.faults import CrashRun
from harness.kafka import KafkaBroker
from harness.stack import sumflow_stack
from harness.topics import read_events

REQUESTS = 2000
KILLS = 3


def test_adder_sigkilled_mid_stream_with_retries_keeps_an_exact_total(kafka_broker: KafkaBroker, tmp_path) -> None:
    with sumflow_stack(kafka_broker.bootstrap, tmp_path, partitions=3) as stack:
        adder = stack.adder
        run = CrashRun.start(adder.target, REQUESTS, kills=KILLS, window=6, deadline_s=300)
        kill_log = []
        started = time.monotonic()
        while run.gate.done < KILLS:
            time.sleep(run.rng.uniform(0.2, 1.5))
            adder.kill()
            kill_log.append((round(time.monotonic() - started, 2), run.stream.acknowledged))
            run.gate.killed()
            time.sleep(run.rng.uniform(0.0, 1.0))  # clients see UNAVAILABLE and keep retrying
            adder.start(timeout=90)
        run.join(360)
        print("kills (t, answered):", kill_log)
        assert kill_log[-1][1] < REQUESTS  # the last kill happened mid-stream
        run.assert_exact(stack.accumulator)
        events = read_events(kafka_broker.bootstrap, stack.topic)
        per_id = Counter(e["request_id"] for e in events)
        assert set(per_id) == {r.request_id for r in run.stream.requests}
        print(f"events on the topic: {len(events)}, ids published twice: {sum(1 for n in per_id.values() if n > 1)}")
