"""Several adders behind one HAProxy balancer, configured by the real roles, routed by request id.

The real ansible-playbook runs, on this machine (local connection): roles/pki on three adder hosts
(`adder-1..3`: their certificates from the internal CA) and on the balancer host `lb`, then
roles/grpc_balancer on `lb`, which includes roles/haproxy (preflight, argument specs, configure: TLS
files, haproxy.cfg validated by `haproxy -c`; stand-in handlers, tests/fixtures/haproxy_role.py) with
the role defaults for routing and health checks.

Then three real adders (TLS with their host certificates, on the ports the inventory names) on a real
broker, and Debian's haproxy running the rendered haproxy.cfg:
- calls through the balancer are answered over TLS checked against the CA (and refused without it);
- a retry of an id, in any spelling the adder accepts, is answered duplicate=True with the first result:
  it reached the adder that applied it (each adder's access log names the ids it answered);
- the ids spread over every adder; a compressed call is refused (its id is not readable for the hash);
- SIGTERM to adder-1 (drain: health NOT_SERVING, still serving SUMFLOW_DRAIN_SECONDS) under a call
  stream with retries on UNAVAILABLE: no other status is seen, the balancer's gRPC health check took it
  out, and only its ids moved (consistent hashing); restarted, it takes back exactly its ids;
- the accumulator reading the topic counts every id exactly once, including the ids published twice
  because they moved while adder-1 was out.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import yaml

from harness.grpc_client import AdderClient
from harness.kafka import KafkaBroker, unique_topic
from harness.ports import free_port, port_open
from harness.processes import AccumulatorProcess, AdderProcess, CommandProcess
from harness.topics import read_events
from sumflow.v1 import sum_pb2
from tests.fixtures.ansible_playbook import LOCAL_CONNECTION, REPO, run_playbook
from tests.fixtures.haproxy_role import RenderedHaproxy, haproxy_paths, link_haproxy_role

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
ADDERS = ("adder-1", "adder-2", "adder-3")  # three: a leaving adder must move its own ids only
DRAIN_SECONDS = 5  # the role default of sumflow_drain_seconds, which the balancer's preflight reads
IDS = 40  # ids sent (then retried) through the balancer
STREAM_THREADS = 2
STREAM_MAX_CALLS = 1500  # per thread: bounds the drain stream
STREAM_AFTER_EXIT_S = 2.0  # the stream keeps going this long after the drained adder exited
RETRIES = 30  # attempts per id on UNAVAILABLE (0.1 s apart)


def _build_project(root: Path) -> Path:
    roles = root / "roles"
    roles.mkdir()
    link_haproxy_role(roles)
    (roles / "grpc_balancer").symlink_to(REPO / "roles/grpc_balancer", target_is_directory=True)
    plays = [
        {"name": "adder certificates", "hosts": "adder", "gather_facts": False, "roles": ["pki"]},
        {"name": "balancer", "hosts": "balancer", "gather_facts": False, "roles": ["pki", "grpc_balancer"]},
    ]
    playbook = root / "playbook.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    return playbook


@dataclass(frozen=True)
class Rendered(RenderedHaproxy):
    front: int
    adder_ports: dict[str, int]

    @property
    def stats_socket(self) -> Path:
        return self.root / "haproxy/admin.sock"

    def host_cert(self, host: str) -> tuple[Path, Path]:
        return self.root / f"controller-pki/hosts/{host}.crt", self.root / f"controller-pki/hosts/{host}.key"

    def run(self, *args: str, **extra: object) -> subprocess.CompletedProcess[str]:
        variables = {**json.loads((self.root / "extra.json").read_text()), **extra}
        return run_playbook(
            self.root / "hosts.yml",
            self.root / "playbook.yml",
            variables,
            *args,
            tmp=self.root,
            roles_path=self.root / "roles",
        )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    root = tmp_path_factory.mktemp("grpc-balancer")
    front = free_port()
    ports = {host: free_port() for host in ADDERS}
    _build_project(root)
    adders = {host: {"ansible_host": "127.0.0.1", "sumflow_grpc_port": port} for host, port in ports.items()}
    inventory = {
        "all": {
            "children": {
                "adder": {"hosts": adders},
                "balancer": {"hosts": {"lb": {"ansible_host": "127.0.0.1"}}},
            }
        }
    }
    (root / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (root / "haproxy").mkdir()
    extra = {
        **LOCAL_CONNECTION,
        "pki_dir": str(root / "controller-pki"),
        "grpc_balancer_listen_host": "127.0.0.1",
        "grpc_balancer_port": front,
        **haproxy_paths(root / "haproxy", stats_socket=root / "haproxy/admin.sock"),
        "haproxy_log_target": "stdout format raw",  # haproxy -db: its log (one line per call) in its output
    }
    (root / "extra.json").write_text(json.dumps(extra))
    setup = Rendered(root, front, ports)
    first = setup.run()
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    return setup


def _server_status(rendered: Rendered) -> dict[str, str]:
    """{server: status} of the adders backend from HAProxy's runtime API (`show stat`)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(rendered.stats_socket))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {row["svname"]: row["status"] for row in rows if row["pxname"] == "adders" and row["svname"] in ADDERS}


@dataclass
class Balanced:
    topic: str
    adders: dict[str, AdderProcess]
    target: str
    credentials: grpc.ChannelCredentials
    haproxy: CommandProcess
    ledger: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> the numbers, every id answered OK
    home: dict[str, str] = field(default_factory=dict)  # id -> the adder that applied it (the retry test's ids)

    def client(self) -> AdderClient:
        return AdderClient(self.target, self.credentials)

    def ids_seen_by(self, host: str) -> Counter[str]:
        """{canonical id: calls} of AddNumbers answered OK by that adder (its access log)."""
        return Counter(
            doc["request_id"]
            for doc in self.adders[host].log_lines()
            if doc.get("msg") == "AddNumbers" and doc.get("code") == "OK"
        )

    def outcomes_of(self, host: str) -> Counter[str]:
        return Counter(
            doc["outcome"]
            for doc in self.adders[host].log_lines()
            if doc.get("msg") == "AddNumbers" and doc.get("code") == "OK"
        )


@pytest.fixture(scope="module")
def balanced(
    rendered: Rendered, kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Balanced]:
    work = tmp_path_factory.mktemp("grpc-balancer-run")
    topic = kafka_broker.create_topic(unique_topic("balancer"), partitions=2, replication=1)
    ca = grpc.ssl_channel_credentials(root_certificates=rendered.ca.read_bytes())
    adders: dict[str, AdderProcess] = {}
    for host, port in rendered.adder_ports.items():
        cert, key = rendered.host_cert(host)
        adder = AdderProcess.for_broker(
            kafka_broker.bootstrap,
            topic,
            work / host,
            SUMFLOW_GRPC_LISTEN=f"127.0.0.1:{port}",
            SUMFLOW_GRPC_TLS_CERT=str(cert),
            SUMFLOW_GRPC_TLS_KEY=str(key),
            SUMFLOW_DRAIN_SECONDS=str(DRAIN_SECONDS),
            SUMFLOW_ACCESS_LOG="all",
        )
        adder.credentials = ca
        adders[host] = adder
    haproxy = CommandProcess(
        "haproxy", [HAPROXY, "-db", "-f", rendered.config], work / "haproxy", lambda: port_open(rendered.front)
    )
    try:
        for adder in adders.values():
            adder.start(timeout=180)
        haproxy.start()
        # Both adders pass the balancer's gRPC health check (bounded: 60 s).
        for _ in range(600):
            if set(_server_status(rendered).values()) == {"UP"}:
                break
            time.sleep(0.1)
        assert set(_server_status(rendered).values()) == {"UP"}, (_server_status(rendered), haproxy.log_tail())
        yield Balanced(topic, adders, f"127.0.0.1:{rendered.front}", ca, haproxy)
    finally:
        haproxy.stop()
        haproxy.kill()
        for adder in adders.values():
            adder.stop(timeout=60)
            adder.kill()


def test_the_rendered_config_routes_by_request_id_with_grpc_health_checks(rendered: Rendered) -> None:
    proc = subprocess.run([HAPROXY, "-c", "-f", str(rendered.config)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Warnings were found" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    text = rendered.config.read_text()
    tls = rendered.root / "haproxy/tls"
    assert f"bind 127.0.0.1:{rendered.front} ssl crt {tls}/tls.crt alpn h2\n" in text
    assert "balance hash req.body,ungrpc(1),lower,regsub(-,,g)\n" in text
    assert "hash-type consistent sdbm avalanche\n" in text
    assert "option http-buffer-request\n" in text
    for host, port in rendered.adder_ports.items():
        assert (
            f"server {host} 127.0.0.1:{port} ssl verify required ca-file {tls}/ca.crt verifyhost {host} alpn h2 "
            "check inter 1000ms fall 1 rise 2 check-alpn h2\n"
        ) in text


def test_a_second_run_changes_nothing(rendered: Rendered) -> None:
    again = rendered.run()
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-3000:]
    recaps = re.findall(r"^(?:lb|adder-\d)\s*:.*$", again.stdout, re.MULTILINE)
    assert len(recaps) == 1 + len(ADDERS), again.stdout[-3000:]
    assert all(re.search(r"changed=0\b", recap) for recap in recaps), recaps


def test_without_tls_the_balancer_speaks_plaintext_http2_on_both_sides(rendered: Rendered, tmp_path: Path) -> None:
    """grpc_balancer_tls false (sumflow_tls_enabled false): h2c to clients and adders, health checks too
    (rendered and accepted by `haproxy -c`; no plaintext adders run here)."""
    paths = {**haproxy_paths(tmp_path / "haproxy"), "haproxy_log_target": "stdout format raw"}
    (tmp_path / "haproxy").mkdir()
    proc = rendered.run(**paths, sumflow_tls_enabled=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    check = subprocess.run(
        [HAPROXY, "-c", "-f", paths["haproxy_config_file"]], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0 and "Warnings were found" not in check.stdout + check.stderr, check
    text = Path(paths["haproxy_config_file"]).read_text()
    assert f"bind 127.0.0.1:{rendered.front} proto h2\n" in text
    for host, port in rendered.adder_ports.items():
        assert f"server {host} 127.0.0.1:{port} proto h2 check inter 1000ms fall 1 rise 2\n" in text


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"sumflow_drain_seconds": 1}, "must not exceed the adders' drain of 1 s"),
        ({"grpc_balancer_adder_group": "nobody"}, "needs at least one host in group nobody"),
    ],
)
def test_preflight_refuses_a_check_slower_than_the_drain_or_no_adders(
    rendered: Rendered, setting: dict[str, object], message: str
) -> None:
    proc = rendered.run("--tags", "grpc_balancer_preflight", **setting)
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-3000:]


@pytest.mark.parametrize("group", ["accumulator", "adder"])
def test_preflight_refuses_a_balancer_on_a_host_whose_haproxy_serves_the_rest_api_or_adder_metrics(
    rendered: Rendered, group: str
) -> None:
    """An accumulator host (the REST API) or an adder host (its metrics) has its own haproxy.cfg."""
    inventory = yaml.safe_load((rendered.root / "hosts.yml").read_text())
    members = inventory["all"]["children"].get(group, {}).get("hosts") or {}
    inventory["all"]["children"][group] = {"hosts": {**members, "lb": {}}}
    hosts = rendered.root / f"hosts-lb-{group}.yml"
    hosts.write_text(yaml.safe_dump(inventory))
    extra = json.loads((rendered.root / "extra.json").read_text())
    proc = run_playbook(
        hosts,
        rendered.root / "playbook.yml",
        extra,
        "--tags",
        "grpc_balancer_preflight",
        tmp=rendered.root,
        roles_path=rendered.root / "roles",
    )
    assert proc.returncode != 0
    assert (
        "lb is an accumulator or adder host with the REST API or the adder's metrics behind HAProxy" in proc.stdout
    ), proc.stdout[-3000:]


def test_calls_through_the_balancer_are_answered_over_tls_with_the_ca(balanced: Balanced) -> None:
    rid = str(uuid.uuid4())
    with balanced.client() as client:
        reply = client.add(rid, 40, 2)
    assert (reply.request_id, reply.result, reply.duplicate) == (rid, 42, False)
    balanced.ledger[rid] = (40, 2)
    with AdderClient(balanced.target, grpc.ssl_channel_credentials()) as untrusted:
        assert untrusted.add_status(str(uuid.uuid4()), 1, 2, timeout=10) == grpc.StatusCode.UNAVAILABLE


def test_a_retried_id_in_any_spelling_reaches_the_adder_that_applied_it(balanced: Balanced) -> None:
    ids = [uuid.uuid4() for _ in range(IDS)]
    with balanced.client() as client:
        first = {str(u): client.add(str(u), i, 1000) for i, u in enumerate(ids)}
        # The same ids again, spelled as the adder also accepts them: upper case, no hyphens.
        again = {str(u): client.add(u.hex.upper(), i, 1000) for i, u in enumerate(ids)}
        plain = {str(u): client.add(str(u), i, 1000) for i, u in enumerate(ids)}
    assert not any(reply.duplicate for reply in first.values())
    for rid, reply in first.items():
        balanced.ledger[rid] = (reply.result - 1000, 1000)
        for retry in (again[rid], plain[rid]):
            assert (retry.request_id, retry.result, retry.duplicate) == (rid, reply.result, True), rid
    # Each id was seen (3 times) by one adder only.
    seen = {host: balanced.ids_seen_by(host) for host in ADDERS}
    for rid in first:
        holders = [host for host in ADDERS if rid in seen[host]]
        assert len(holders) == 1 and seen[holders[0]][rid] == 3, (rid, holders)
        balanced.home[rid] = holders[0]


def test_ids_spread_over_every_adder(balanced: Balanced) -> None:
    per_adder = {host: balanced.outcomes_of(host)["new"] for host in ADDERS}
    print(f"ids applied per adder: {per_adder}")
    assert all(count > 0 for count in per_adder.values()), per_adder
    assert sum(per_adder.values()) == len(balanced.ledger), (per_adder, len(balanced.ledger))


def test_a_compressed_call_is_refused_not_routed_blindly(balanced: Balanced) -> None:
    request_id = str(uuid.uuid4())
    with balanced.client() as client, pytest.raises(grpc.RpcError) as raised:
        client.stub.AddNumbers(
            sum_pb2.AddNumbersRequest(request_id=request_id, first_number=1, second_number=2),
            timeout=15,
            compression=grpc.Compression.Gzip,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "uncompressed" in (raised.value.details() or "")
    assert all(request_id not in balanced.ids_seen_by(host) for host in ADDERS)


def test_with_mutual_tls_the_balancer_requires_client_certificates_and_presents_its_own(
    balanced: Balanced, rendered: Rendered, tmp_path: Path
) -> None:
    """sumflow_grpc_mtls: the balancer's clients need a certificate of the CA (the pki role's client
    `controller`); the balancer presents its host certificate to the adders (these adders accept any
    client, so that only shows HAProxy loads it)."""
    front = free_port()
    paths = {**haproxy_paths(tmp_path / "haproxy"), "haproxy_log_target": "stdout format raw"}
    (tmp_path / "haproxy").mkdir()
    proc = rendered.run(**paths, grpc_balancer_port=front, sumflow_grpc_mtls=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    text = Path(paths["haproxy_config_file"]).read_text()
    tls = paths["haproxy_tls_dir"]
    assert f"bind 127.0.0.1:{front} ssl crt {tls}/tls.crt alpn h2 verify required ca-file {tls}/ca.crt\n" in text
    assert all(f"alpn h2 crt {tls}/tls.crt check" in line for line in text.splitlines() if "server adder-" in line)
    haproxy = CommandProcess(
        "haproxy-mtls", [HAPROXY, "-db", "-f", paths["haproxy_config_file"]], tmp_path, lambda: port_open(front)
    )
    client_dir = rendered.root / "controller-pki/clients"
    with_cert = grpc.ssl_channel_credentials(
        root_certificates=rendered.ca.read_bytes(),
        private_key=(client_dir / "controller.key").read_bytes(),
        certificate_chain=(client_dir / "controller.crt").read_bytes(),
    )
    rid = str(uuid.uuid4())
    with haproxy.running():
        with AdderClient(f"127.0.0.1:{front}", balanced.credentials) as no_cert:
            assert no_cert.add_status(str(uuid.uuid4()), 1, 2, timeout=10) == grpc.StatusCode.UNAVAILABLE
        # Health checks of the adders pass before calls are routed (bounded: 60 s of retries).
        with AdderClient(f"127.0.0.1:{front}", with_cert) as client:
            for _ in range(60):
                if client.add_status(rid, 5, 6, timeout=10) == grpc.StatusCode.OK:
                    break
                time.sleep(1)
            reply = client.add(rid, 5, 6)
    assert (reply.request_id, reply.result, reply.duplicate) == (rid, 11, True)
    (home,) = [host for host in ADDERS if rid in balanced.ids_seen_by(host)]
    balanced.ledger[rid] = (5, 6)
    balanced.home[rid] = home
    # A second balancer over the same adders (same names, same order) routes the id to the same adder.
    with balanced.client() as client:
        assert client.add(rid, 5, 6).duplicate


class RetryingStream:
    """STREAM_THREADS threads, each sending fresh ids through the balancer; a call that fails
    UNAVAILABLE is retried with the same id (RETRIES times); any other status is a failure."""

    def __init__(self, balanced: Balanced) -> None:
        self.balanced = balanced
        self.results: dict[str, tuple[int, int]] = {}
        self.failures: list[str] = []
        self.unavailable = 0
        self.stop_at: float | None = None  # monotonic
        self.started = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(STREAM_THREADS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(120)
        assert not any(t.is_alive() for t in self._threads), "a stream thread did not end"

    def _call(self, client: AdderClient, rid: str, first: int) -> None:
        for _ in range(RETRIES):
            try:
                reply = client.add(rid, first, 7, timeout=20)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    with self._lock:
                        self.unavailable += 1
                    time.sleep(0.1)
                    continue
                with self._lock:
                    self.failures.append(f"{rid}: {exc.code().name} {exc.details()}")
                return
            with self._lock:
                self.results[rid] = (first, 7)
                assert reply.result == first + 7
            self.started.set()
            return
        with self._lock:
            self.failures.append(f"{rid}: UNAVAILABLE {RETRIES} times")

    def _run(self, n: int) -> None:
        with self.balanced.client() as client:
            for i in range(STREAM_MAX_CALLS):
                if self.stop_at is not None and time.monotonic() > self.stop_at:
                    return
                self._call(client, str(uuid.uuid4()), n * STREAM_MAX_CALLS + i)


def _wait_status(rendered: Rendered, host: str, status: str) -> None:
    for _ in range(600):  # bounded: 60 s
        if _server_status(rendered)[host] == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"{host} not {status} on the balancer: {_server_status(rendered)}")


def _resend(balanced: Balanced, ids: list[str]) -> dict[str, bool]:
    """{id: duplicate} of each id sent again through the balancer (same numbers, no hyphens); the
    result must be the first one."""
    answers = {}
    with balanced.client() as client:
        for rid in ids:
            first, second = balanced.ledger[rid]
            reply = client.add(rid.replace("-", ""), first, second)
            assert (reply.request_id, reply.result) == (rid, first + second)
            answers[rid] = reply.duplicate
    return answers


def test_a_draining_adder_leaves_the_balancer_before_it_stops(balanced: Balanced, rendered: Rendered) -> None:
    """SIGTERM to adder-1 under a retrying call stream: only OK (after retries on UNAVAILABLE, if any);
    the balancer took it out on its health answer; only the ids it held move to the others."""
    drained = ADDERS[0]
    adder = balanced.adders[drained]
    assert adder.process is not None
    stream = RetryingStream(balanced)
    stream.start()
    try:
        assert stream.started.wait(60)
        adder.process.send_signal(signal.SIGTERM)
        code = adder.process.wait(60)
        stream.stop_at = time.monotonic() + STREAM_AFTER_EXIT_S
    finally:
        stream.stop_at = stream.stop_at or time.monotonic()
        stream.join()
    status = _server_status(rendered)
    haproxy_log = "\n".join(balanced.haproxy.output_lines())
    print(
        f"stream: {len(stream.results)} ids answered, {stream.unavailable} UNAVAILABLE retried, "
        f"failures {stream.failures[:5]}; balancer: {status}"
    )
    assert code == 0, adder.log_tail()
    assert stream.failures == [], stream.failures[:10]
    assert status[drained].startswith("DOWN") and {status[h] for h in ADDERS[1:]} == {"UP"}, status
    # Taken out by the gRPC health check's answer (not SERVING), not by a refused connection.
    taken_out = re.findall(rf"Server adders/{drained} is DOWN, reason: [^,]*, info: \"([^\"]*)\"", haproxy_log)
    assert taken_out and "comment: SERVING" in taken_out[0], haproxy_log[-3000:]
    balanced.ledger.update(stream.results)

    # Consistent hashing: the others' ids stay where they are (still duplicates); the drained adder's
    # ids go to one of the others, which does not know them: answered as new (published again).
    answers = _resend(balanced, list(balanced.home))
    moved = [rid for rid, host in balanced.home.items() if host == drained]
    assert moved and all(not answers[rid] for rid in moved), answers
    assert all(answers[rid] for rid, host in balanced.home.items() if host != drained), answers


def test_a_rejoining_adder_takes_back_only_its_own_ids(balanced: Balanced, rendered: Rendered) -> None:
    """adder-1 again, on its de-dupe store: its ids come back to it (duplicates again), the others stay."""
    rejoined = ADDERS[0]
    balanced.adders[rejoined].start(timeout=180)
    _wait_status(rendered, rejoined, "UP")
    answers = _resend(balanced, list(balanced.home))
    assert all(answers.values()), answers
    seen_again = balanced.ids_seen_by(rejoined)
    assert all(seen_again[rid] == 4 for rid, host in balanced.home.items() if host == rejoined)


def test_the_accumulator_counts_every_id_once(balanced: Balanced, kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    """Ids published twice (moved while an adder was out) are applied once: the accumulator's window."""
    events = Counter(event["request_id"] for event in read_events(kafka_broker.bootstrap, balanced.topic))
    twice = sorted(rid for rid, count in events.items() if count > 1)
    moved = [rid for rid, host in balanced.home.items() if host == ADDERS[0]]
    print(f"ids {len(balanced.ledger)}, events {sum(events.values())}, ids published more than once {len(twice)}")
    assert set(events) == set(balanced.ledger)
    assert set(moved) <= set(twice)

    kafka_broker.create_topic(f"{balanced.topic}.dlq", partitions=1, replication=1)
    accumulator = AccumulatorProcess.for_broker(kafka_broker.bootstrap, balanced.topic, tmp_path / "accumulator")
    expected = {"total": sum(a + b for a, b in balanced.ledger.values()), "applied": len(balanced.ledger)}
    with accumulator.running(timeout=180):
        accumulator.wait_applied(len(balanced.ledger))
        accumulator.wait_until(lambda: _lag(accumulator) == 0, "caught up with the topic", 120)
        totals = accumulator.total()
    print(f"accumulator {totals}, expected {expected}")
    assert totals == expected


def _lag(accumulator: AccumulatorProcess) -> float:
    """Records on the topic the accumulator has not applied (its sumflow_accumulator_consumer_lag)."""
    lines = [
        line
        for line in accumulator.get("/metrics")[1].decode().splitlines()
        if line.startswith("sumflow_accumulator_consumer_lag{")
    ]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines) if lines else float("inf")
