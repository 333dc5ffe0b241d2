"""SIGTERM ends a stalled accumulator within the unit's stop timeout (TimeoutStopSec=30).

The stall is real: the state directory is a full tmpfs, a valid event is pending, every commit
fails, and /healthz already reports the stall when the signal arrives.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

from kafka import KafkaProducer

from harness.kafka import unique_topic
from harness.processes import AccumulatorProcess
from tests.chaos.test_disk_full import fill

STOP_TIMEOUT_SECONDS = 30  # the unit's TimeoutStopSec


def test_sigterm_stops_a_stalled_accumulator_within_the_stop_timeout(kafka_broker, tmp_path: Path):
    boot = kafka_broker.bootstrap
    topic = kafka_broker.create_topic(unique_topic("stall-term"), partitions=1)
    dlq = kafka_broker.create_topic(unique_topic("stall-term-dlq"))
    mount = tmp_path / "state"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        acc = AccumulatorProcess.for_broker(
            boot, topic, tmp_path / "acc", dlq_topic=dlq, state_dir=mount, SUMFLOW_STALL_SECONDS="2"
        )
        acc.start()
        fill(mount)
        doc = {"v": 1, "request_id": str(uuid.uuid4()), "first_number": 1, "second_number": 2, "result": 3}
        producer = KafkaProducer(bootstrap_servers=boot, acks="all")
        producer.send(topic, value=json.dumps(doc | {"produced_at_ms": int(time.time() * 1000)}).encode()).get(30)
        producer.close(10)
        give_up = time.monotonic() + 60
        while acc.get("/healthz")[0] == 200 and time.monotonic() < give_up:
            time.sleep(0.2)
        assert acc.get("/healthz")[0] == 503, acc.log_tail()
        started = time.monotonic()
        assert acc.stop(STOP_TIMEOUT_SECONDS) == 0, acc.log_tail()
        print(f"stalled accumulator stopped {time.monotonic() - started:.1f} s after SIGTERM")
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        if mount.is_mount():
            subprocess.run(["umount", "-l", str(mount)], check=False)
