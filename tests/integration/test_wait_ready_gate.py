"""roles/sumflow/files/sumflow-wait-ready.py, the rolling release's gate, against the real services:
ready when the adder's health is SERVING and the accumulator's /readyz 200; not while the adder
drains (NOT_SERVING) nor once it is gone; a TLS adder is checked with the CA (and, with mutual TLS, a
client certificate), as the sumflow role calls it on a deployed host."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from harness.kafka import KafkaBroker
from harness.pki import TestPki
from harness.processes import AdderProcess
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


def test_gate_checks_a_mutual_tls_adder_with_the_ca_and_a_client_certificate(
    kafka_broker: KafkaBroker, topic: str, tmp_path: Path
) -> None:
    pki = TestPki.create(tmp_path / "pki")
    server, client = pki.issue("adder", server=True), pki.issue("gate", client=True)
    adder = AdderProcess.for_broker(
        kafka_broker.bootstrap,
        topic,
        tmp_path / "adder",
        SUMFLOW_GRPC_TLS_CERT=str(server.cert),
        SUMFLOW_GRPC_TLS_KEY=str(server.key),
        SUMFLOW_GRPC_TLS_CLIENT_CA=str(pki.ca_cert),
    )
    adder.credentials = grpc.ssl_channel_credentials(
        pki.ca_cert.read_bytes(), client.key.read_bytes(), client.cert.read_bytes()
    )
    adder.start()
    try:
        tls = ["--ca", str(pki.ca_cert), "--cert", str(client.cert), "--key", str(client.key)]
        ready = _gate("--timeout", "30", "--adder", adder.target, *tls)
        assert ready.returncode == 0, ready.stderr
        assert ready.stdout == f"ready: adder {adder.target}\n"
        # What the gate said before it knew TLS: a plaintext health check never passes.
        plaintext = _gate("--timeout", "1", "--adder", adder.target)
        assert plaintext.returncode == 1 and "UNAVAILABLE" in plaintext.stderr, plaintext.stderr
        without_cert = _gate("--timeout", "1", "--adder", adder.target, "--ca", str(pki.ca_cert))
        assert without_cert.returncode == 1 and "UNAVAILABLE" in without_cert.stderr, without_cert.stderr
        half = _gate("--adder", adder.target, "--cert", str(client.cert), "--key", str(client.key))
        assert half.returncode == 2 and "with --ca" in half.stderr
    finally:
        adder.close_client()
        adder.stop()
