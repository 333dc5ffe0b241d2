"""SIGKILL the adder mid-stream (three times), restart it on the same de-dupe directory, and let
every client retry each unanswered request with its own id: the total stays exact. An adder that
died between Kafka's ack and its de-dupe write re-publishes on the retry; the accumulator's
applied-id window drops that second event."""

from __future__ import annotations

import random
import time
from collections import Counter

from tests.support.broker import KafkaBroker
from tests.support.request_stream import KillGate, RequestStream
from tests.support.services import sumflow_stack
from tests.support.topic_reader import read_events

REQUESTS = 2000
KILLS = 3


def test_adder_sigkilled_mid_stream_with_retries_keeps_an_exact_total(kafka_broker: KafkaBroker, tmp_path) -> None:
    seed = random.randrange(1 << 32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    stream = RequestStream.random(REQUESTS, seed)
    gate = KillGate(REQUESTS, KILLS)
    with sumflow_stack(kafka_broker.bootstrap, tmp_path, partitions=3) as stack:
        adder = stack.adder
        runner = stream.run_in_background(adder.target, threads=6, deadline_s=300, gate=gate)
        kill_log = []
        started = time.monotonic()
        while gate.done < KILLS:
            time.sleep(rng.uniform(0.2, 1.5))
            adder.kill()
            kill_log.append((round(time.monotonic() - started, 2), stream.answered))
            gate.killed()
            time.sleep(rng.uniform(0.0, 1.0))  # clients see UNAVAILABLE and keep retrying
            adder.start(timeout=90)
        runner.join(360)
        assert not runner.is_alive(), "request stream did not finish in time"
        print(stream.summary())
        print("kills (t, answered):", kill_log)
        stream.assert_all_answered()
        assert kill_log[-1][1] < REQUESTS  # the last kill happened mid-stream
        final = stack.accumulator.wait_applied(REQUESTS, timeout=120)
        assert final == {"total": stream.expected_total, "applied": REQUESTS}
        events = read_events(kafka_broker.bootstrap, stack.topic)
        per_id = Counter(e["request_id"] for e in events)
        assert set(per_id) == {r.request_id for r in stream.requests}
        print(f"events on the topic: {len(events)}, ids published twice: {sum(1 for n in per_id.values() if n > 1)}")
