"""roles/sumflow/files/sumflow-wait-ready.py, the rolling release's gate, against the real services:
ready when the adder's health is SERVING and the accumulator's /readyz 200; not while the adder
drains (NOT_SERVING) nor once it is gone."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.kafka import KafkaBroker
from harness.stack import sumflow_stack

GATE = Path(__file__).resolve().parents[2] / "roles" / "sumflow" / "files" / "sumflow-wait-ready.py"


def _gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GATE), *args], capture_output=True, text=True, timeout=60, check=False)


def test_gate_passes_ready_services_and_holds_a_draining_or_stopped_adder(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    with sumflow_stack(kafka_broker.bootstrap, tmp_path, adder_env={"SUMFLOW_DRAIN_SECONDS": "10"}) as stack:
        targets = ["--adder", stack.adder.target, "--accumulator", stack.accumulator.base_url]
        ready = _gate("--timeout", "30", *targets)
        assert ready.returncode == 0, ready.stderr
        assert ready.stdout.startswith("ready: accumulator http://127.0.0.1:"), ready.stdout

        assert stack.adder.process is not None
        stack.adder.process.send_signal(signal.SIGTERM)
        for _ in range(300):  # the adder logs it once health is NOT_SERVING (bounded: 30 s)
            if any('"adder draining"' in line for line in stack.adder.output_lines()):
                break
            time.sleep(0.1)
        draining = _gate("--timeout", "1", "--adder", stack.adder.target)
        assert stack.adder.is_alive()  # still draining: the gate held it, it did not see a closed port
        assert draining.returncode == 1
        assert draining.stderr.endswith("health of (server): NOT_SERVING\n"), draining.stderr

        assert stack.adder.stop(timeout=60) == 0
        gone = _gate("--timeout", "1", "--adder", stack.adder.target)
        assert gone.returncode == 1 and "UNAVAILABLE" in gone.stderr, gone.stderr
