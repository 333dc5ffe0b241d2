"""`sumflow` over TLS: the options reach grpc.ssl_channel_credentials and the HTTPS client.

The services speak plaintext today, so the servers here are a gRPC health server and an HTTPS server
with certificates made by openssl for this test, the client certificate required (mutual TLS). What
is under test is the command's TLS side: verification against --ca, the client certificate, and the
refusal of a server it cannot verify.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SUMFLOW = str(Path(sys.executable).parent / "sumflow")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem, server.{pem,key} for 127.0.0.1/localhost, client.{pem,key}, all signed by the CA."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=sumflow test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "server.ext"]), ("client", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "1", "-out", f"{name}.pem", *ext, cwd=d)  # fmt: skip
    return d


@contextlib.contextmanager
def grpc_health_server(pki: Path) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("sumflow.v1.SumService", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield port
    finally:
        server.stop(None)


BODIES = {"/api/total": b'{"total":42,"applied":1}', "/healthz": b'{"status":"ok"}'}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = BODIES.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body or b'{"status":404,"error":"Not Found","message":"no"}')

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def https_server(pki: Path) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    context.load_verify_locations(pki / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SUMFLOW, *args], capture_output=True, text=True, timeout=60)


def tls_args(pki: Path) -> list[str]:
    return ["--ca", str(pki / "ca.pem"), "--cert", str(pki / "client.pem"), "--key", str(pki / "client.key")]


def test_https_with_ca_and_client_certificate(pki: Path) -> None:
    with https_server(pki) as port:
        url = f"https://127.0.0.1:{port}"
        done = run("total", "--accumulator", url, *tls_args(pki))
        assert (done.returncode, done.stdout) == (0, "total 42  (1 summation applied)\n"), done.stderr
        unverified = run("total", "--accumulator", url)  # the system roots do not know the test CA
        assert unverified.returncode == 24
        assert "CERTIFICATE_VERIFY_FAILED" in unverified.stderr


def test_grpc_with_ca_and_client_certificate(pki: Path) -> None:
    with grpc_health_server(pki) as port:
        target = f"127.0.0.1:{port}"
        done = run("status", "--json", "--adder", target, "--adder-metrics", "http://127.0.0.1:1", *tls_args(pki))
        adder = json.loads(done.stdout)["adder"]
        assert adder["detail"] == "SERVING" and adder["ready"], adder
        plaintext = run("status", "--json", "--adder", target, "--adder-metrics", "http://127.0.0.1:1")
        assert json.loads(plaintext.stdout)["adder"]["detail"] == "UNREACHABLE"
        no_client_cert = run("status", "--json", "--adder", target, "--ca", str(pki / "ca.pem"))
        assert json.loads(no_client_cert.stdout)["adder"]["detail"] == "UNREACHABLE"
