"""An app host's HAProxy, configured by the real roles, in front of a real accumulator and a real adder.

The real ansible-playbook runs, on this machine (one host `app` at 127.0.0.1 in the accumulator and
adder groups, local connection): roles/pki (the CA and the host certificate on the controller), then
roles/sumflow's accumulator.env and adder.env templates and its https_proxy.yml, which includes
roles/haproxy with the sumflow frontends (the REST API, the adder's metrics), backends and userlist:
the role's preflight, argument specs and configure tasks (TLS files, haproxy.cfg validated by
`haproxy -c`, the systemd drop-in), every path under a temporary directory. The role's handlers are
stand-ins (nothing touches this machine's haproxy.service).

Then Debian's haproxy runs the rendered haproxy.cfg on loopback ports in front of a real accumulator
and a real adder of two processes (on a real broker) that listen where the rendered env files say: the
REST API answers over TLS checked against the controller's CA, plaintext on the TLS ports gets no
answer, /metrics and every path of the adder's metrics port without the password (or with a wrong
one, or spelled otherwise) get 401, and with Prometheus' scrape password (the controller file
roles/prometheus and roles/node_exporter read) 200, the adder's counting the calls of both its
processes. The documented clients (`sumflow --ca`, `sumflow status --metrics-user
--metrics-password-file`, `curl --cacert`) and Molecule's deployment probe (`flow`, through the same
TLS adder) read the total and the metrics through it.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml
from kafka import KafkaProducer

from harness.kafka import KafkaBroker, unique_topic
from harness.ports import free_port, port_open
from harness.processes import AccumulatorProcess, AdderProcess, CommandProcess
from sumflow.entrypoints.cli_read import build_version, parse_metrics
from sumflow.v1 import sum_pb2, sum_pb2_grpc
from tests.fixtures.ansible_playbook import LOCAL_CONNECTION, REPO, run_playbook
from tests.fixtures.event_records import event_value
from tests.fixtures.haproxy_role import ROLE, RenderedHaproxy, haproxy_paths, link_haproxy_role

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
DEBIAN_UNIT = Path("/lib/systemd/system/haproxy.service")
HOST = "app"


def _build_project(root: Path) -> Path:
    """roles/ with pki and haproxy (tests/fixtures/haproxy_role.py) and render_sumflow (sumflow's defaults,
    vars and templates, its https_proxy.yml)."""
    roles = root / "roles"
    roles.mkdir()
    link_haproxy_role(roles)
    sumflow = roles / "render_sumflow"
    (sumflow / "tasks").mkdir(parents=True)
    for sub in ("defaults", "vars", "templates"):
        (sumflow / sub).symlink_to(REPO / "roles/sumflow" / sub, target_is_directory=True)
    tasks = [
        {"name": "out", "ansible.builtin.file": {"path": "{{ render_dir }}", "state": "directory", "mode": "0755"}},
        *(
            {
                "name": f"{service}.env",
                "ansible.builtin.template": {
                    "src": f"{service}.env.j2",
                    "dest": f"{{{{ render_dir }}}}/{service}.env",
                    "mode": "0644",
                },
            }
            for service in ("accumulator", "adder")
        ),
        {"name": "the proxy", "ansible.builtin.import_tasks": str(REPO / "roles/sumflow/tasks/https_proxy.yml")},
    ]
    (sumflow / "tasks/main.yml").write_text(yaml.safe_dump(tasks, sort_keys=False))
    playbook = root / "playbook.yml"
    play = {
        "name": "app over tls",
        "hosts": "accumulator:adder",
        "gather_facts": False,
        "roles": ["pki", "render_sumflow"],
    }
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    return playbook


@dataclass(frozen=True)
class Rendered(RenderedHaproxy):
    front: int
    back: int
    metrics_front: int
    metrics_back: int
    first_output: str

    @property
    def scrape_password(self) -> str:
        """The controller file Prometheus' scrape.password comes from (roles/prometheus defaults)."""
        return (self.root / "controller-cache/credentials/node_exporter_web_password").read_text().split()[0]

    @property
    def scrape_password_file(self) -> Path:
        return self.root / "controller-cache/credentials/node_exporter_web_password"

    def env(self, service: str = "accumulator") -> dict[str, str]:
        lines = (self.root / f"out/{service}.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_playbook(
            self.root / "hosts.yml",
            self.root / "playbook.yml",
            json.loads((self.root / "extra.json").read_text()),
            *args,
            tmp=self.root,
            roles_path=self.root / "roles",
        )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    root = tmp_path_factory.mktemp("rest-tls")
    front, back, metrics_front, metrics_back = (free_port() for _ in range(4))
    _build_project(root)
    host = {HOST: {"ansible_host": "127.0.0.1"}}
    inventory = {"all": {"children": {"accumulator": {"hosts": host}, "adder": {"hosts": host}}}}
    (root / "hosts.yml").write_text(yaml.safe_dump(inventory))
    extra = {
        **LOCAL_CONNECTION,
        "render_dir": str(root / "out"),
        "sumflow_controller_cache": str(root / "controller-cache"),
        "sumflow_grafana_stack_enabled": False,
        "pki_dir": str(root / "controller-pki"),
        "sumflow_listen_host": "127.0.0.1",
        "sumflow_http_port": front,
        "sumflow_http_backend_port": back,
        "sumflow_adder_metrics_port": metrics_front,
        "sumflow_adder_metrics_backend_port": metrics_back,
        **haproxy_paths(root / "haproxy"),
    }
    (root / "extra.json").write_text(json.dumps(extra))
    (root / "haproxy").mkdir()
    setup = Rendered(root, front, back, metrics_front, metrics_back, "")
    first = setup.run("-v", "--diff")
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    return Rendered(root, front, back, metrics_front, metrics_back, first.stdout + first.stderr)


@dataclass(frozen=True)
class Proxied:
    topic: str
    accumulator: AccumulatorProcess

    def direct_total(self) -> int:
        """The total read from the accumulator itself (its backend port), past the proxy."""
        return self.accumulator.total()["total"]


@pytest.fixture(scope="module")
def proxied(
    rendered: Rendered, kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxied]:
    """The accumulator on the rendered backend address (20 events applied), HAProxy in front."""
    work = tmp_path_factory.mktemp("rest-tls-run")
    topic = kafka_broker.create_topic(unique_topic("rest-tls"), partitions=1, replication=1)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    expected = 0
    for i in range(20):
        producer.send(topic, value=event_value(str(uuid.uuid4()), i, 5))
        expected += i + 5
    producer.flush(30)
    producer.close(5)
    accumulator = AccumulatorProcess.for_broker(
        kafka_broker.bootstrap,
        topic,
        work / "accumulator",
        SUMFLOW_HTTP_LISTEN=rendered.env()["SUMFLOW_HTTP_LISTEN"],
        SUMFLOW_HTTP_THREADS="2",
    )
    haproxy = CommandProcess(
        "haproxy",
        [HAPROXY, "-db", "-f", rendered.config],
        work / "haproxy",
        lambda: port_open(rendered.front) and port_open(rendered.metrics_front),
    )
    with accumulator.running(timeout=180), haproxy.running():
        assert accumulator.wait_applied(20)["total"] == expected
        yield Proxied(topic, accumulator)


@pytest.fixture(scope="module")
def adder(
    rendered: Rendered, proxied: Proxied, kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AdderProcess]:
    """A TLS adder of two processes (the host certificate the role installed) on the proxied topic, its
    metrics where the rendered adder.env says, behind the running HAProxy."""
    tls = rendered.root / "haproxy/tls"
    adder = AdderProcess.for_broker(
        kafka_broker.bootstrap,
        proxied.topic,
        tmp_path_factory.mktemp("rest-tls-adder"),
        SUMFLOW_GRPC_TLS_CERT=str(tls / "tls.crt"),
        SUMFLOW_GRPC_TLS_KEY=str(tls / "tls.key"),
        SUMFLOW_METRICS_LISTEN=rendered.env("adder")["SUMFLOW_METRICS_LISTEN"],
        SUMFLOW_ADDER_PROCESSES="2",
    )
    adder.credentials = grpc.ssl_channel_credentials(root_certificates=rendered.ca.read_bytes())
    with adder.running(timeout=180):
        # health answers once one worker serves; the supervisor logs the workers once both are up
        assert len(adder.wait_for_log_line(lambda line: line.get("processes") == 2)["worker_pids"]) == 2
        yield adder


def _tls_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def _get(
    rendered: Rendered, path: str, auth: tuple[str, str] | None = None, port: int | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """GET over TLS checked against the CA on the REST API's port (or `port`)."""
    request = urllib.request.Request(f"https://127.0.0.1:{port or rendered.front}{path}")
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10, context=_tls_context(rendered.ca)) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_the_rendered_config_passes_haproxy_check_and_hides_the_password(rendered: Rendered) -> None:
    proc = subprocess.run([HAPROXY, "-c", "-f", str(rendered.config)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = rendered.config.read_text()
    assert rendered.scrape_password not in text and rendered.scrape_password not in rendered.first_output
    (user_line,) = re.findall(r"^\s*user prometheus password (\S+)$", text, re.MULTILINE)
    assert user_line.startswith("$2b$06$"), user_line
    assert f"bind 127.0.0.1:{rendered.front} ssl crt {rendered.root}/haproxy/tls/tls.crt alpn h2,http/1.1" in text
    assert f"server accumulator 127.0.0.1:{rendered.back}" in text
    metrics_bind = (
        f"bind 127.0.0.1:{rendered.metrics_front} ssl crt {rendered.root}/haproxy/tls/tls.crt alpn h2,http/1.1"
    )
    assert metrics_bind in text
    assert f"server adder 127.0.0.1:{rendered.metrics_back}" in text
    # One userlist for both frontends; the adder's metrics frontend has no public path.
    adder_frontend = text.split("frontend adder_metrics", 1)[1].split("\nbackend ", 1)[0]
    assert "http-request auth realm sumflow if !authenticated" in adder_frontend
    assert "public_path" not in adder_frontend
    assert oct((rendered.root / "haproxy/tls/tls.key").stat().st_mode & 0o777) == "0o600"
    assert os.readlink(rendered.root / "haproxy/tls/tls.crt.key") == "tls.key"


def test_the_accumulator_listens_on_the_backend_address_only(rendered: Rendered) -> None:
    assert rendered.env()["SUMFLOW_HTTP_LISTEN"] == f"127.0.0.1:{rendered.back}"


def test_the_adder_metrics_listen_on_the_backend_address_only(rendered: Rendered) -> None:
    assert rendered.env("adder")["SUMFLOW_METRICS_LISTEN"] == f"127.0.0.1:{rendered.metrics_back}"


def test_without_tls_no_haproxy_and_both_services_listen_on_their_public_ports(
    rendered: Rendered, tmp_path: Path
) -> None:
    """sumflow_tls_enabled false: no HAProxy entry, so no haproxy.cfg; the services on their own ports."""
    for name in ("hosts.yml", "playbook.yml"):
        (tmp_path / name).write_text((rendered.root / name).read_text().replace(str(rendered.root), str(tmp_path)))
    (tmp_path / "roles").symlink_to(rendered.root / "roles", target_is_directory=True)
    extra = json.loads((rendered.root / "extra.json").read_text().replace(str(rendered.root), str(tmp_path)))
    (tmp_path / "haproxy").mkdir()
    proc = run_playbook(
        tmp_path / "hosts.yml",
        tmp_path / "playbook.yml",
        {**extra, "sumflow_tls_enabled": False},
        tmp=tmp_path,
        roles_path=tmp_path / "roles",
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert not (tmp_path / "haproxy/haproxy.cfg").exists()
    env = Rendered(tmp_path, rendered.front, rendered.back, rendered.metrics_front, rendered.metrics_back, "").env
    assert env("adder")["SUMFLOW_METRICS_LISTEN"] == f"127.0.0.1:{rendered.metrics_front}"
    assert env()["SUMFLOW_HTTP_LISTEN"] == f"127.0.0.1:{rendered.front}"


def test_a_second_run_changes_nothing(rendered: Rendered) -> None:
    again = rendered.run()
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-3000:]
    recap = re.search(r"^app\s*:.*$", again.stdout, re.MULTILINE)
    assert recap and re.search(r"changed=0\b", recap.group(0)), again.stdout[-3000:]


def test_the_api_answers_over_tls_checked_against_the_ca(rendered: Rendered, proxied: Proxied) -> None:
    status, body, _ = _get(rendered, "/api/total")
    assert status == 200, body
    assert json.loads(body)["total"] == proxied.direct_total()
    for path in ("/healthz", "/readyz"):
        assert _get(rendered, path)[0] == 200, path


def test_the_documented_clients_read_the_total_with_the_ca(rendered: Rendered, proxied: Proxied) -> None:
    """`sumflow total --accumulator https://... --ca` and `curl --cacert` (docs/security.md)."""
    url = f"https://127.0.0.1:{rendered.front}"
    cli = [str(Path(sys.executable).with_name("sumflow")), "total", "--accumulator", url, "--ca", str(rendered.ca)]
    proc = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["total"] == proxied.direct_total()
    curl = ["curl", "-sS", "--fail", "--cacert", str(rendered.ca), f"{url}/api/total"]
    proc = subprocess.run(curl, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["total"] == proxied.direct_total()
    curl = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(rendered.ca), f"{url}/metrics"]
    assert subprocess.run(curl, capture_output=True, text=True, timeout=60).stdout == "401"


def _status(rendered: Rendered, adder: AdderProcess, *extra: str) -> tuple[int, dict[str, dict[str, object]]]:
    """`sumflow status --json` through the proxy: gRPC health over TLS, both services' metrics over https."""
    argv = [
        str(Path(sys.executable).with_name("sumflow")),
        "status",
        "--json",
        "--adder",
        adder.target,
        "--adder-metrics",
        f"https://127.0.0.1:{rendered.metrics_front}",
        "--accumulator",
        f"https://127.0.0.1:{rendered.front}",
        "--ca",
        str(rendered.ca),
        *extra,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_sumflow_status_without_the_metrics_password_reads_readiness_only(
    rendered: Rendered, proxied: Proxied, adder: AdderProcess
) -> None:
    """Health and readiness are public; lag and version come from the metrics (401 without the password)."""
    code, doc = _status(rendered, adder)
    assert code == 0, doc
    assert doc["adder"]["detail"] == "SERVING" and doc["accumulator"]["ready"], doc
    assert doc["adder"]["version"] is None and doc["accumulator"]["version"] is None, doc
    assert doc["accumulator"]["consumer_lag"] == {}, doc
    assert doc["adder"]["error"] == f"metrics: GET https://127.0.0.1:{rendered.metrics_front}/metrics: HTTP 401"
    assert doc["accumulator"]["error"] == f"metrics: GET https://127.0.0.1:{rendered.front}/metrics: HTTP 401"


def test_sumflow_status_with_the_metrics_password_reads_both_services_metrics(
    rendered: Rendered, proxied: Proxied, adder: AdderProcess
) -> None:
    password_file = str(rendered.scrape_password_file)
    code, doc = _status(rendered, adder, "--metrics-user", "prometheus", "--metrics-password-file", password_file)
    assert code == 0, doc
    assert doc["adder"]["error"] is None and doc["accumulator"]["error"] is None, doc
    assert doc["adder"]["version"] == doc["accumulator"]["version"] is not None, doc
    assert doc["accumulator"]["consumer_lag"] == {"0": 0}, doc
    # A wrong password: still 401, the command says so.
    wrong = rendered.root / "wrong.password"
    wrong.write_text(rendered.scrape_password + "x\n")
    _, doc = _status(rendered, adder, "--metrics-user", "prometheus", "--metrics-password-file", str(wrong))
    assert doc["adder"]["error"] == f"metrics: GET https://127.0.0.1:{rendered.metrics_front}/metrics: HTTP 401"


def test_a_client_without_the_ca_is_refused(rendered: Rendered, proxied: Proxied) -> None:
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(
            f"https://127.0.0.1:{rendered.front}/api/total", timeout=10, context=ssl.create_default_context()
        )


def _assert_plaintext_gets_no_answer(port: int, path: str) -> None:
    """A plain HTTP request to HAProxy's TLS port gets no HTTP answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine)):
        connection.request("GET", path)
        connection.getresponse()
    connection.close()


def _assert_refused_without_the_password(rendered: Rendered, path: str, port: int) -> None:
    """No login, a wrong password and a wrong user all get 401 with the realm."""
    status, body, headers = _get(rendered, path, port=port)
    assert status == 401, (path, body[:200])
    assert headers.get("www-authenticate") == 'Basic realm="sumflow"'
    assert _get(rendered, path, ("prometheus", rendered.scrape_password + "x"), port=port)[0] == 401
    assert _get(rendered, path, ("admin", rendered.scrape_password), port=port)[0] == 401


def test_plaintext_http_on_the_tls_port_gets_no_answer(rendered: Rendered, proxied: Proxied) -> None:
    _assert_plaintext_gets_no_answer(rendered.front, "/api/total")


@pytest.mark.parametrize("path", ["/metrics", "/%6Detrics", "//metrics", "/metrics/", "/"])
def test_metrics_without_the_password_get_401(rendered: Rendered, proxied: Proxied, path: str) -> None:
    _assert_refused_without_the_password(rendered, path, rendered.front)


@pytest.mark.parametrize("path", ["/api/../metrics", "/api/%2e%2e/metrics", "/api/./total"])
def test_dot_segments_are_refused_even_with_the_password(rendered: Rendered, proxied: Proxied, path: str) -> None:
    assert _get(rendered, path)[0] == 400, path
    assert _get(rendered, path, ("prometheus", rendered.scrape_password))[0] == 400, path


def test_metrics_with_prometheus_scrape_password_get_200(rendered: Rendered, proxied: Proxied) -> None:
    status, body, _ = _get(rendered, "/metrics", ("prometheus", rendered.scrape_password))
    assert status == 200, body[:300]
    assert b"sumflow_accumulator_ready" in body


@pytest.fixture(scope="module")
def dropin(rendered: Rendered) -> Path:
    """The role's drop-in rendered by ansible-playbook with the role's defaults (User=haproxy) and the
    sumflow frontend on port 8080."""
    root = rendered.root / "unit"
    render = root / "roles/render_haproxy_unit"
    (render / "tasks").mkdir(parents=True)
    for sub in ("defaults", "templates"):
        (render / sub).symlink_to(ROLE / sub, target_is_directory=True)
    task = {
        "name": "drop-in",
        "ansible.builtin.template": {"src": "hardening.conf.j2", "dest": str(root / "hardening.conf"), "mode": "0644"},
    }
    (render / "tasks/main.yml").write_text(yaml.safe_dump([task]))
    play = [{"name": "unit", "hosts": "accumulator", "gather_facts": False, "roles": ["render_haproxy_unit"]}]
    (root / "playbook.yml").write_text(yaml.safe_dump(play))
    extra = {**LOCAL_CONNECTION, "haproxy_frontends": [{"name": "rest", "bind": "0.0.0.0:8080", "backend": "b"}]}
    proc = run_playbook(rendered.root / "hosts.yml", root / "playbook.yml", extra, tmp=root, roles_path=root / "roles")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return root / "hardening.conf"


def test_the_hardened_unit_runs_as_haproxy_without_capabilities(dropin: Path) -> None:
    lines = dropin.read_text().splitlines()
    assert "User=haproxy" in lines and "CapabilityBoundingSet=" in lines
    assert not any(line.startswith("AmbientCapabilities") for line in lines)


def test_the_hardened_unit_scores_at_most_2_0(dropin: Path, tmp_path: Path) -> None:
    """Debian's haproxy.service with the role's drop-in, scored offline like the units we ship."""
    unit = tmp_path / "haproxy.service"
    unit.write_text(DEBIAN_UNIT.read_text().replace("[Install]", dropin.read_text() + "\n[Install]"))
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert found, proc.stdout[-2000:] + proc.stderr
    assert float(found.group(1)) <= 2.0, proc.stdout[-4000:]


def test_the_deployment_probe_flow_reads_the_total_over_tls(
    rendered: Rendered, proxied: Proxied, adder: AdderProcess
) -> None:
    """molecule/default/files/deployment_probe.py flow, as Molecule verify runs it: one AddNumbers call to a
    TLS adder (the host certificate the role installed) raises the total read through the proxy over
    https, checked against the same CA, by exactly its sum, once."""
    probe = [
        sys.executable,
        str(REPO / "molecule/default/files/deployment_probe.py"),
        "flow",
        f"--adder={adder.target}",
        f"--accumulator=https://127.0.0.1:{rendered.front}",
        f"--ca={rendered.ca}",
        "--timeout=120",
    ]
    proc = subprocess.run(probe, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["final"]["total"] == result["before"]["total"] + sum(result["added"]), result
    assert result["final"]["total"] == proxied.direct_total()


# --- the adder's metrics behind the same HAProxy -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/%6Detrics", "//metrics", "/", "/anything"])
def test_adder_metrics_without_the_password_get_401(rendered: Rendered, adder: AdderProcess, path: str) -> None:
    _assert_refused_without_the_password(rendered, path, rendered.metrics_front)


def test_adder_metrics_refuse_plaintext_and_a_client_without_the_ca(rendered: Rendered, adder: AdderProcess) -> None:
    _assert_plaintext_gets_no_answer(rendered.metrics_front, "/metrics")
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(
            f"https://127.0.0.1:{rendered.metrics_front}/metrics", timeout=10, context=ssl.create_default_context()
        )


def test_adder_metrics_with_the_password_count_the_calls_of_every_worker(
    rendered: Rendered, adder: AdderProcess
) -> None:
    """Calls on fresh connections, which the kernel spreads over the two processes: the one metrics port
    behind the proxy (the supervisor's, summing its workers') counts every one."""

    def answered() -> float:
        status, body, _ = _get(
            rendered, "/metrics", ("prometheus", rendered.scrape_password), port=rendered.metrics_front
        )
        assert status == 200, body[:300]
        samples = parse_metrics(body.decode())
        assert build_version(samples) is not None
        return sum(
            value
            for labels, value in samples.get("sumflow_grpc_requests_total", [])
            if labels.get("method") == "sumflow.v1.SumService/AddNumbers"
        )

    before = answered()
    calls = 12
    credentials = grpc.ssl_channel_credentials(root_certificates=rendered.ca.read_bytes())
    for i in range(calls):
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.secure_channel(adder.target, credentials, options=options) as channel:
            reply = sum_pb2_grpc.SumServiceStub(channel).AddNumbers(
                sum_pb2.AddNumbersRequest(request_id=str(uuid.uuid4()), first_number=i, second_number=1), timeout=30
            )
        assert reply.result == i + 1
    assert answered() == before + calls
