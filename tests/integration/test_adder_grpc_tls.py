"""The adder's gRPC port over TLS (SUMFLOW_GRPC_TLS_CERT/KEY) and mutual TLS (+ SUMFLOW_GRPC_TLS_CLIENT_CA).

Real `sumflow-adder` processes on the session broker; certificates from harness/pki.py. A
plaintext client, a client that does not trust the server's CA, and (with mTLS) a client without a
certificate from the client CA are all refused; the `sumflow` command with `--ca` gets its answer.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from harness.grpc_client import AdderClient
from harness.kafka import KafkaBroker
from harness.pki import IssuedCert, TestPki
from harness.processes import AdderProcess, ServiceError

pytestmark = pytest.mark.timeout(300)

SUMFLOW = str(Path(sys.executable).parent / "sumflow")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server_cert(pki: TestPki) -> IssuedCert:
    return pki.issue("adder", server=True)


def _credentials(pki: TestPki, client: IssuedCert | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_cert.read_bytes(),
        private_key=None if client is None else client.key.read_bytes(),
        certificate_chain=None if client is None else client.cert.read_bytes(),
    )


def _status(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    with AdderClient(target, credentials) as client:
        return client.add_status(str(uuid.uuid4()), 1, 2, timeout=5.0)


def _adder(broker: KafkaBroker, topic: str, workdir: Path, pki: TestPki, env: dict[str, str]) -> Iterator[AdderProcess]:
    adder = AdderProcess.for_broker(broker.bootstrap, topic, workdir, **env)
    adder.credentials = _credentials(pki, pki.issue(f"probe-{uuid.uuid4().hex[:6]}", client=True))
    try:
        adder.start()
        yield adder
    finally:
        adder.close_client()
        try:
            adder.stop()
        except ServiceError:
            adder.kill()


@pytest.fixture
def tls_adder(
    kafka_broker: KafkaBroker, topic: str, tmp_path: Path, pki: TestPki, server_cert: IssuedCert
) -> Iterator[AdderProcess]:
    env = {"SUMFLOW_GRPC_TLS_CERT": str(server_cert.cert), "SUMFLOW_GRPC_TLS_KEY": str(server_cert.key)}
    yield from _adder(kafka_broker, topic, tmp_path / "adder", pki, env)


@pytest.fixture
def mtls_adder(
    kafka_broker: KafkaBroker, topic: str, tmp_path: Path, pki: TestPki, server_cert: IssuedCert
) -> Iterator[AdderProcess]:
    env = {
        "SUMFLOW_GRPC_TLS_CERT": str(server_cert.cert),
        "SUMFLOW_GRPC_TLS_KEY": str(server_cert.key),
        "SUMFLOW_GRPC_TLS_CLIENT_CA": str(pki.ca_cert),
    }
    yield from _adder(kafka_broker, topic, tmp_path / "adder", pki, env)


def test_tls_adder_answers_a_client_that_trusts_its_ca_and_refuses_plaintext(
    tls_adder: AdderProcess, pki: TestPki, tmp_path: Path
) -> None:
    reply = AdderClient(tls_adder.target, _credentials(pki)).add(str(uuid.uuid4()), 40, 2)
    assert (reply.result, reply.duplicate) == (42, False)
    assert _status(tls_adder.target, None) == grpc.StatusCode.UNAVAILABLE
    stranger = TestPki.create(tmp_path / "other-ca")
    assert _status(tls_adder.target, _credentials(stranger)) == grpc.StatusCode.UNAVAILABLE


def test_the_sumflow_command_adds_over_tls_with_the_ca(tls_adder: AdderProcess, pki: TestPki) -> None:
    rid = str(uuid.uuid4())
    args = [SUMFLOW, "add", "5", "7", "--id", rid, "--adder", tls_adder.target]
    done = subprocess.run([*args, "--ca", str(pki.ca_cert)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("5 + 7 = 12 "), done.stdout
    plaintext = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert plaintext.returncode == 24, plaintext.stderr  # UNAVAILABLE: a plaintext client cannot connect


def test_mtls_adder_requires_a_client_certificate_from_its_client_ca(
    mtls_adder: AdderProcess, pki: TestPki, tmp_path: Path
) -> None:
    client = pki.issue("cli", client=True)
    assert _status(mtls_adder.target, _credentials(pki, client)) == grpc.StatusCode.OK
    assert _status(mtls_adder.target, _credentials(pki)) == grpc.StatusCode.UNAVAILABLE
    assert _status(mtls_adder.target, None) == grpc.StatusCode.UNAVAILABLE
    stranger = TestPki.create(tmp_path / "other-ca").issue("intruder", client=True)
    assert _status(mtls_adder.target, _credentials(pki, stranger)) == grpc.StatusCode.UNAVAILABLE


def test_every_worker_of_a_multi_process_adder_serves_tls(
    kafka_broker: KafkaBroker, topic: str, tmp_path: Path, pki: TestPki, server_cert: IssuedCert
) -> None:
    env = {
        "SUMFLOW_GRPC_TLS_CERT": str(server_cert.cert),
        "SUMFLOW_GRPC_TLS_KEY": str(server_cert.key),
        "SUMFLOW_ADDER_PROCESSES": "2",
    }
    for adder in _adder(kafka_broker, topic, tmp_path / "adder", pki, env):
        # each new connection lands on one of the workers (SO_REUSEPORT): every one of them must be TLS
        for _ in range(8):
            assert _status(adder.target, _credentials(pki)) == grpc.StatusCode.OK
            assert _status(adder.target, None) == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_file_that_is_not_pem_stops_the_start_with_status_2(
    kafka_broker: KafkaBroker, topic: str, tmp_path: Path, server_cert: IssuedCert
) -> None:
    junk = tmp_path / "cert.pem"
    junk.write_text("not a certificate\n")
    adder = AdderProcess.for_broker(
        kafka_broker.bootstrap,
        topic,
        tmp_path / "adder",
        SUMFLOW_GRPC_TLS_CERT=str(junk),
        SUMFLOW_GRPC_TLS_KEY=str(server_cert.key),
    )
    done = subprocess.run(adder.command(), env=adder.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"SUMFLOW_GRPC_TLS_CERT: {junk} is not a PEM file" in done.stdout + done.stderr
