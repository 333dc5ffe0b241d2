"""Loki and Tempo behind the monitoring host's HAProxy, configured by the real roles, in front of stand-ins.

The real ansible-playbook runs, on this machine (one monitoring host `mon` at 127.0.0.1, local
connection): roles/pki (the CA and the host certificate on the controller), then roles/grafana_stack's
server preflight and its tasks/proxy.yml, which includes roles/haproxy with the Loki and Tempo
frontends, backends and userlists of the role's defaults: the haproxy role's preflight, argument specs
and configure tasks (TLS files, haproxy.cfg validated by `haproxy -c`), every path under a temporary
directory, every port a free loopback port. The haproxy role's handlers are stand-ins
(tests/fixtures/haproxy_role.py).

Loki and Tempo cannot be downloaded on this machine, so they cannot run here. Debian's haproxy runs the
rendered haproxy.cfg in front of two stand-ins on the backend addresses the role gives Loki and Tempo:
a small HTTP server that answers Loki's push API (204) and records what reached it, and a gRPC server
that implements OTLP's TraceService/Export (what Tempo's OTLP gRPC receiver implements) and records the
spans. Through HAProxy: an unauthenticated push, a wrong password, and Prometheus' scrape user outside
/metrics get 401 and reach nothing; plaintext on the TLS port gets no HTTP answer; an authenticated https
push checked against the controller's CA reaches the stand-in; the scrape user reads /metrics; and an
OpenTelemetry OTLP/gRPC exporter (the SDK the services use) exports a span over TLS (ALPN h2, HTTP/2 to
the backend) with Tempo's credentials, and is refused UNAUTHENTICATED without them.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import shutil
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from harness.ports import free_port, port_open
from harness.processes import CommandProcess
from tests.fixtures.ansible_playbook import LOCAL_CONNECTION, REPO, run_playbook
from tests.fixtures.haproxy_role import RenderedHaproxy, haproxy_paths, link_haproxy_role

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
HOST = "mon"
PUSH = "/loki/api/v1/push"
PORTS = (
    "grafana_stack_loki_http_port",
    "grafana_stack_loki_backend_port",
    "grafana_stack_tempo_http_port",
    "grafana_stack_tempo_http_backend_port",
    "grafana_stack_tempo_otlp_grpc_port",
    "grafana_stack_tempo_otlp_grpc_backend_port",
    "grafana_stack_tempo_otlp_http_port",
    "grafana_stack_tempo_otlp_http_backend_port",
)


def _build_project(root: Path) -> Path:
    """roles/ with pki and haproxy (tests/fixtures/haproxy_role.py) and render_stack (grafana_stack's
    defaults, its server preflight and its proxy.yml)."""
    roles = root / "roles"
    roles.mkdir()
    link_haproxy_role(roles)
    stack = roles / "render_stack"
    (stack / "tasks").mkdir(parents=True)
    (stack / "defaults").symlink_to(REPO / "roles/grafana_stack/defaults", target_is_directory=True)
    # The dashboards directory resolves as in the repo (role_path/../../observability).
    (root / "observability").symlink_to(REPO / "observability", target_is_directory=True)
    tasks = [
        {
            "name": "the grafana_stack server preflight",
            "ansible.builtin.include_tasks": str(REPO / "roles/grafana_stack/tasks/preflight.yml"),
            "vars": {"grafana_stack__preflight_server": True},
        },
        {"name": "the proxy", "ansible.builtin.import_tasks": str(REPO / "roles/grafana_stack/tasks/proxy.yml")},
    ]
    (stack / "tasks/main.yml").write_text(yaml.safe_dump(tasks, sort_keys=False))
    playbook = root / "playbook.yml"
    play = {"name": "monitoring proxy", "hosts": "monitoring", "gather_facts": False, "roles": ["pki", "render_stack"]}
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    return playbook


@dataclass(frozen=True)
class Rendered(RenderedHaproxy):
    ports: dict[str, int]
    output: str

    def password(self, name: str) -> str:
        """A controller credential file: loki_web_password, tempo_web_password, node_exporter_web_password."""
        return (self.root / "controller-cache/credentials" / name).read_text().split()[0]

    def front(self, component: str) -> int:
        return self.ports[f"grafana_stack_{component}_port"]


def _render(root: Path, **extra: Any) -> subprocess.CompletedProcess[str]:
    return run_playbook(
        root / "hosts.yml", root / "playbook.yml", extra, "-v", "--diff", tmp=root, roles_path=root / "roles"
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    root = tmp_path_factory.mktemp("monitoring-proxy")
    _build_project(root)
    inventory = {"all": {"children": {"monitoring": {"hosts": {HOST: {"ansible_host": "127.0.0.1"}}}}}}
    (root / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (root / "haproxy").mkdir()
    ports = {name: free_port() for name in PORTS}
    extra = {
        **LOCAL_CONNECTION,
        "sumflow_controller_cache": str(root / "controller-cache"),
        "pki_dir": str(root / "controller-pki"),
        "grafana_stack_listen_address": "127.0.0.1",
        **ports,
        **haproxy_paths(root / "haproxy"),
    }
    (root / "extra.json").write_text(json.dumps(extra))
    proc = _render(root, **extra)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return Rendered(root, ports, proc.stdout + proc.stderr)


# --- the stand-ins --------------------------------------------------------------------------------------


@dataclass
class Received:
    requests: list[tuple[str, str, bytes, dict[str, str]]] = field(default_factory=list)
    spans: list[str] = field(default_factory=list)


class _LokiStandIn(BaseHTTPRequestHandler):
    """Loki's push API as the proxy sees it: POST /loki/api/v1/push -> 204; GET /metrics -> 200."""

    received: Received

    def _record(self) -> bytes:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.requests.append((self.command, self.path, body, dict(self.headers)))
        return body

    def do_POST(self) -> None:
        self._record()
        self.send_response(204 if self.path == PUSH else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._record()
        body = b"loki_build_info 1\n" if self.path == "/metrics" else b"not found\n"
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TempoOtlpStandIn(trace_service_pb2_grpc.TraceServiceServicer):
    """OTLP's TraceService/Export, as Tempo's OTLP gRPC receiver implements it: records span names."""

    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                self.received.spans.extend(span.name for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture(scope="module")
def proxied(rendered: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Received]:
    """HAProxy from the rendered config, the stand-ins on Loki's and Tempo's OTLP backend addresses."""
    received = Received()
    handler = type("LokiStandIn", (_LokiStandIn,), {"received": received})
    loki = ThreadingHTTPServer(("127.0.0.1", rendered.ports["grafana_stack_loki_backend_port"]), handler)
    loki_thread = threading.Thread(target=loki.serve_forever, daemon=True)
    loki_thread.start()
    tempo = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TempoOtlpStandIn(received), tempo)
    tempo.add_insecure_port(f"127.0.0.1:{rendered.ports['grafana_stack_tempo_otlp_grpc_backend_port']}")
    tempo.start()
    work = tmp_path_factory.mktemp("monitoring-proxy-run")
    haproxy = CommandProcess(
        "haproxy",
        [HAPROXY, "-db", "-f", rendered.config],
        work / "haproxy",
        lambda: all(port_open(rendered.front(c)) for c in ("loki_http", "tempo_otlp_grpc")),
    )
    try:
        with haproxy.running():
            yield received
    finally:
        tempo.stop(grace=None)
        loki.shutdown()
        loki.server_close()
        loki_thread.join(10)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _request(
    rendered: Rendered, method: str, path: str, auth: tuple[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(f"https://127.0.0.1:{rendered.front('loki_http')}{path}", data=body, method=method)
    request.add_header("Content-Type", "application/json")
    if auth is not None:
        request.add_header("Authorization", _basic(*auth))
    context = ssl.create_default_context(cafile=str(rendered.ca))
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def _push_body(line: str) -> bytes:
    return json.dumps({"streams": [{"stream": {"unit": "sumflow-adder.service"}, "values": [["1", line]]}]}).encode()


# --- the rendered configuration -----------------------------------------------------------------------


def test_the_rendered_config_passes_haproxy_check_and_hides_the_passwords(rendered: Rendered) -> None:
    proc = subprocess.run([HAPROXY, "-c", "-f", str(rendered.config)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = rendered.config.read_text()
    for name in ("loki_web_password", "tempo_web_password", "node_exporter_web_password"):
        secret = rendered.password(name)
        assert len(secret) == 40
        assert secret not in text and secret not in rendered.output, name
    users = dict(re.findall(r"^userlist (\w+)\n\s*user (\S+) password \$2b\$06\$", text, re.MULTILINE))
    assert users == {"loki": "sumflow", "tempo": "sumflow", "scrape": "prometheus"}


def test_every_public_port_is_tls_and_every_backend_is_loopback(rendered: Rendered) -> None:
    text = rendered.config.read_text()
    crt = f"ssl crt {rendered.root}/haproxy/tls/tls.crt"
    for component in ("loki_http", "tempo_http", "tempo_otlp_http"):
        assert f"bind 127.0.0.1:{rendered.front(component)} {crt} alpn h2,http/1.1\n" in text, component
    # OTLP/gRPC: HTTP/2 negotiated by ALPN, HTTP/2 in clear text to Tempo on loopback.
    assert f"bind 127.0.0.1:{rendered.front('tempo_otlp_grpc')} {crt} alpn h2\n" in text
    grpc_backend = rendered.ports["grafana_stack_tempo_otlp_grpc_backend_port"]
    assert f"server tempo 127.0.0.1:{grpc_backend} proto h2\n" in text
    servers = re.findall(r"^\s*server \S+ (\S+)", text, re.MULTILINE)
    expected = [f"127.0.0.1:{rendered.ports[name]}" for name in PORTS if name.endswith("_backend_port")]
    assert sorted(servers) == sorted(expected)
    assert len(re.findall(r"^\s*bind ", text, re.MULTILINE)) == 4
    # Queries get longer than the default 30 s: Loki's and Tempo's own 1 m timeouts answer first.
    for backend in ("loki", "tempo_http"):
        section = text.split(f"\nbackend {backend}\n", 1)[1].split("\n\n", 1)[0]
        assert "    timeout server 2m\n" in section + "\n", section
    assert all(" ssl crt " in line for line in re.findall(r"^\s*bind .*$", text, re.MULTILINE))


def test_a_second_run_changes_nothing(rendered: Rendered) -> None:
    """The bcrypt salts are derived from host, list, user and password: the same haproxy.cfg every run."""
    before = rendered.config.read_bytes()
    again = _render(rendered.root, **json.loads((rendered.root / "extra.json").read_text()))
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-3000:]
    recap = re.search(rf"^{HOST}\s*:.*$", again.stdout, re.MULTILINE)
    assert recap and re.search(r"changed=0\b", recap.group(0)), again.stdout[-3000:]
    assert rendered.config.read_bytes() == before


def test_plaintext_rendering_has_no_proxy(rendered: Rendered, tmp_path: Path) -> None:
    """sumflow_tls_enabled false: proxy.yml does nothing (Loki and Tempo serve their ports themselves)."""
    root = tmp_path / "plain"
    root.mkdir()
    _build_project(root)
    shutil.copy(rendered.root / "hosts.yml", root / "hosts.yml")
    proc = _render(
        root,
        **LOCAL_CONNECTION,
        sumflow_controller_cache=str(root / "controller-cache"),
        pki_dir=str(root / "controller-pki"),
        sumflow_tls_enabled=False,
        **haproxy_paths(root / "haproxy"),
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert not (root / "haproxy").exists()
    assert not (root / "controller-cache/credentials/loki_web_password").exists()


# --- HAProxy running the rendered configuration ------------------------------------------------------------


def test_an_unauthenticated_push_gets_401_and_reaches_nothing(rendered: Rendered, proxied: Received) -> None:
    before = len(proxied.requests)
    status, headers = _request(rendered, "POST", PUSH, body=_push_body("anonymous"))
    assert status == 401
    assert headers.get("www-authenticate") == 'Basic realm="loki"'
    assert len(proxied.requests) == before


@pytest.mark.parametrize(
    ("user", "secret"),
    [
        ("sumflow", "wrong-password-of-loki-0123"),
        ("sumflow", "tempo_web_password"),
        ("prometheus", "node_exporter_web_password"),
        ("admin", "loki_web_password"),
    ],
)
def test_a_wrong_login_gets_401_and_reaches_nothing(
    rendered: Rendered, proxied: Received, user: str, secret: str
) -> None:
    """A wrong password, Tempo's password, Prometheus' scrape user (/metrics only), another user name."""
    password = rendered.password(secret) if secret.endswith("_password") else secret
    before = len(proxied.requests)
    assert _request(rendered, "POST", PUSH, (user, password), _push_body("wrong"))[0] == 401
    assert len(proxied.requests) == before


def test_plaintext_on_the_tls_port_gets_no_answer(rendered: Rendered, proxied: Received) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", rendered.front("loki_http"), timeout=10)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine)):
        connection.request("POST", PUSH, body=_push_body("plaintext"), headers={"Content-Type": "application/json"})
        connection.getresponse()
    connection.close()
    assert not any(b"plaintext" in body for _, _, body, _ in proxied.requests)


def test_a_client_without_the_ca_is_refused(rendered: Rendered, proxied: Received) -> None:
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(
            f"https://127.0.0.1:{rendered.front('loki_http')}/ready", timeout=10, context=ssl.create_default_context()
        )


def test_an_authenticated_https_push_reaches_loki(rendered: Rendered, proxied: Received) -> None:
    body = _push_body('{"level":"info","msg":"authenticated push"}')
    status, _ = _request(rendered, "POST", PUSH, ("sumflow", rendered.password("loki_web_password")), body)
    assert status == 204
    method, path, received, headers = proxied.requests[-1]
    assert (method, path, received) == ("POST", PUSH, body)
    # HAProxy says who the client was (option forwardfor).
    assert {k.lower(): v for k, v in headers.items()}.get("x-forwarded-for") == "127.0.0.1"


def test_the_scrape_user_reads_metrics_only(rendered: Rendered, proxied: Received) -> None:
    scrape = ("prometheus", rendered.password("node_exporter_web_password"))
    assert _request(rendered, "GET", "/metrics", scrape)[0] == 200
    assert proxied.requests[-1][:2] == ("GET", "/metrics")
    for path in ("/loki/api/v1/query_range", "/metrics/", "/%6Detrics/x"):
        assert _request(rendered, "GET", path, scrape)[0] == 401, path
    assert _request(rendered, "GET", "/metrics")[0] == 401


def _otlp_exporter(rendered: Rendered, auth: tuple[str, str] | None) -> OTLPSpanExporter:
    return OTLPSpanExporter(
        endpoint=f"127.0.0.1:{rendered.front('tempo_otlp_grpc')}",
        credentials=grpc.ssl_channel_credentials(root_certificates=rendered.ca.read_bytes()),
        headers=None if auth is None else {"authorization": _basic(*auth)},
        timeout=10,
    )


def _export_one_span(exporter: OTLPSpanExporter, name: str) -> SpanExportResult:
    results: list[SpanExportResult] = []

    class Recording(SimpleSpanProcessor):
        def on_end(self, span: Any) -> None:
            results.append(self.span_exporter.export((span,)))

    provider = TracerProvider()
    provider.add_span_processor(Recording(exporter))
    with provider.get_tracer("monitoring-proxy-test").start_as_current_span(name):
        pass
    provider.shutdown()
    return results[0]


def test_otlp_grpc_with_tempos_credentials_reaches_tempo(rendered: Rendered, proxied: Received) -> None:
    """OTLP/gRPC over TLS (ALPN h2) through HAProxy, HTTP/2 in clear text behind it, Tempo's login."""
    exporter = _otlp_exporter(rendered, ("sumflow", rendered.password("tempo_web_password")))
    assert _export_one_span(exporter, "through-the-proxy") is SpanExportResult.SUCCESS
    assert proxied.spans[-1] == "through-the-proxy"


@pytest.mark.parametrize("auth", [None, ("sumflow", "loki_web_password")], ids=["anonymous", "lokis-password"])
def test_otlp_grpc_without_tempos_credentials_is_refused(
    rendered: Rendered, proxied: Received, auth: tuple[str, str] | None
) -> None:
    """HAProxy's 401 reaches the gRPC client as UNAUTHENTICATED (not retried); nothing reaches Tempo."""
    login = None if auth is None else (auth[0], rendered.password(auth[1]))
    before = list(proxied.spans)
    channel = grpc.secure_channel(
        f"127.0.0.1:{rendered.front('tempo_otlp_grpc')}",
        grpc.ssl_channel_credentials(root_certificates=rendered.ca.read_bytes()),
    )
    with channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        metadata = None if login is None else [("authorization", _basic(*login))]
        with pytest.raises(grpc.RpcError) as refused:
            stub.Export(trace_service_pb2.ExportTraceServiceRequest(), metadata=metadata, timeout=10)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED, refused.value
    assert _export_one_span(_otlp_exporter(rendered, login), "refused") is SpanExportResult.FAILURE
    assert proxied.spans == before
