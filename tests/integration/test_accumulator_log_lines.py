"""Every line the accumulator writes is one JSON object, also after a restart with existing state
(the "accumulator ready" line then carries the next offsets, keyed by partition number)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from harness.kafka import KafkaBroker
from harness.stack import sumflow_stack


def test_every_line_is_json_after_a_restart_with_state(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    with sumflow_stack(kafka_broker.bootstrap, tmp_path, partitions=3) as stack:
        for i in range(12):
            stack.adder.add(str(uuid.uuid4()), i, i)
        stack.accumulator.wait_applied(12)
        stack.accumulator.restart()
        assert stack.accumulator.total()["applied"] == 12
        lines = stack.accumulator.output_lines()
    docs = [json.loads(line) for line in lines]  # raises on the first line that is not JSON
    assert all(isinstance(doc, dict) for doc in docs)
    ready = [doc for doc in docs if doc["msg"] == "accumulator ready"]
    assert len(ready) == 2
    assert ready[0]["offsets"] == {}
    offsets = ready[1]["offsets"]
    # keyed by partition number (as strings in JSON); the ids hash to partitions at random, so a
    # partition may have received none of the 12 (about 2% of runs)
    assert offsets and set(offsets) <= {"0", "1", "2"}, offsets
    assert sum(offsets.values()) == 12
