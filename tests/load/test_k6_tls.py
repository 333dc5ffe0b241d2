"""load/grpc.js against an adder that requires mutual TLS: SUMFLOW_TLS_CA/CERT/KEY make it connect.

A short closed-model run with the client certificate passes every check and the applied-count check;
the same run without the TLS variables cannot connect, and fails on the connect-failure threshold.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc
import pytest

from harness.kafka import KafkaBroker, create_topics, unique_topic
from harness.pki import TestPki
from harness.processes import AccumulatorProcess, AdderProcess, ServiceError
from load.k6 import LOOSE_LATENCY, SHORT_STAGES, run_k6

pytestmark = pytest.mark.timeout(400)

LEVELS = {"SCENARIOS": "closed", "VUS": "3", "PEAK_VUS": "4", "SETTLE_SECONDS": "30"}


@pytest.fixture(scope="module")
def tls_stack(
    kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AdderProcess, AccumulatorProcess, TestPki]]:
    workdir = tmp_path_factory.mktemp("k6-tls")
    pki = TestPki.create(workdir / "pki")
    server = pki.issue("adder", server=True)
    probe = pki.issue("probe", client=True)
    topic = unique_topic("sum")
    create_topics(kafka_broker.bootstrap, [topic, f"{topic}.dlq"], 1, 1)
    accumulator = AccumulatorProcess.for_broker(kafka_broker.bootstrap, topic, workdir / "accumulator")
    adder = AdderProcess.for_broker(
        kafka_broker.bootstrap,
        topic,
        workdir / "adder",
        SUMFLOW_GRPC_TLS_CERT=str(server.cert),
        SUMFLOW_GRPC_TLS_KEY=str(server.key),
        SUMFLOW_GRPC_TLS_CLIENT_CA=str(pki.ca_cert),
    )
    adder.credentials = grpc.ssl_channel_credentials(
        pki.ca_cert.read_bytes(), probe.key.read_bytes(), probe.cert.read_bytes()
    )
    try:
        accumulator.start()
        adder.start()
        yield adder, accumulator, pki
    finally:
        adder.close_client()
        for service in (adder, accumulator):
            with contextlib.suppress(ServiceError):
                service.stop()
            service.kill()


def _env(adder: AdderProcess, accumulator: AccumulatorProcess) -> dict[str, str]:
    targets = {"SUMFLOW_GRPC_TARGET": f"localhost:{adder.grpc_port}", "SUMFLOW_REST_URL": accumulator.base_url}
    return {**targets, **SHORT_STAGES, **LOOSE_LATENCY, **LEVELS}


def test_grpc_script_over_mutual_tls(tls_stack: tuple[AdderProcess, AccumulatorProcess, TestPki]) -> None:
    adder, accumulator, pki = tls_stack
    client = pki.issue("k6", client=True)
    tls = {"SUMFLOW_TLS_CA": str(pki.ca_cert), "SUMFLOW_TLS_CERT": str(client.cert), "SUMFLOW_TLS_KEY": str(client.key)}
    before = accumulator.total()["applied"]
    run = run_k6("grpc.js", {**_env(adder, accumulator), **tls})
    assert run.returncode == 0, run.explain()
    assert run.failed_checks == {}
    verdict = run.summary["applied_check"]
    assert verdict["verdict"] == "OK", run.explain()
    assert verdict["accepted_distinct"] > 0
    assert accumulator.total()["applied"] - before == verdict["accepted_distinct"]


def test_grpc_script_without_tls_settings_is_refused(
    tls_stack: tuple[AdderProcess, AccumulatorProcess, TestPki],
) -> None:
    adder, accumulator, _ = tls_stack
    # a dial that cannot succeed waits for the call timeout: shorter than the scenario, so it ends in it
    run = run_k6("grpc.js", {**_env(adder, accumulator), "CALL_TIMEOUT_S": "2"})
    assert run.returncode == 99, run.explain()  # k6: a threshold failed
    assert run.failed_thresholds == ["sumflow_connect_failed count<1"], run.explain()
    assert run.summary["applied_check"]["accepted_distinct"] == 0, run.explain()
