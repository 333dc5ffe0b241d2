"""Connection floods against both HTTP ports of the real services.

1,000 connections are held open to the accumulator's REST port and 1,000 to the adder's metrics
port, half of them idle and half slow clients that trickle a request header byte by byte. While they
are open, /api/total answers every request with p99 <= 50 ms (the issue's bound), the adder's
/metrics still answers, both services keep their thread count, and their memory stays bounded.
Once the clients stop sending, the servers close the idle channels (channel timeout).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.http_client import http_get
from harness.kafka import unique_topic
from harness.processes import AccumulatorProcess, AdderProcess

FLOOD = 1000  # connections per port
REQUESTS = 400  # /api/total requests timed during the flood
P99_BOUND_SECONDS = 0.050
MAX_EXTRA_THREADS = 2
MAX_RSS_GROWTH_BYTES = 64 << 20
CHANNEL_TIMEOUT_SECONDS = 10  # sumflow.entrypoints.http_server


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Threads", "VmRSS"):
            fields[key] = int(value.split()[0]) * (1024 if key == "VmRSS" else 1)
    return fields


def open_sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += fd.readlink().name.startswith("socket:")
        except OSError:
            continue
    return count


def flood(port: int, count: int) -> list[socket.socket]:
    """`count` connections: even ones idle, odd ones start a request they never finish."""
    conns = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if i % 2:
            sock.sendall(b"GET /api/total HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        conns.append(sock)
    return conns


def trickle(conns: list[socket.socket]) -> None:
    """One more header byte from each slow client."""
    for sock in conns[1::2]:
        sock.sendall(b"a")


@pytest.fixture
def services(kafka_broker, tmp_path: Path) -> Iterator[tuple[AccumulatorProcess, AdderProcess]]:
    topic = kafka_broker.create_topic(unique_topic("flood"), partitions=1)
    dlq = kafka_broker.create_topic(unique_topic("flood-dlq"))
    acc = AccumulatorProcess.for_broker(kafka_broker.bootstrap, topic, tmp_path / "acc", dlq_topic=dlq)
    adder = AdderProcess.for_broker(kafka_broker.bootstrap, topic, tmp_path / "adder", SUMFLOW_LOG_LEVEL="WARNING")
    acc.start()
    adder.start()
    yield acc, adder
    acc.kill()
    adder.kill()


def test_thousand_idle_and_slow_connections_per_port_do_not_take_the_api_down(services):
    acc, adder = services
    metrics_port = int(adder.env["SUMFLOW_METRICS_LISTEN"].rsplit(":", 1)[1])
    for _ in range(20):  # warm up both servers
        acc.get("/api/total")
        http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    before = {"acc": proc_status(acc.pid), "adder": proc_status(adder.pid)}

    conns = flood(acc.http_port, FLOOD) + flood(metrics_port, FLOOD)
    trickle(conns)
    give_up = time.monotonic() + 10
    while time.monotonic() < give_up and min(open_sockets(acc.pid), open_sockets(adder.pid)) < FLOOD:
        time.sleep(0.1)
    held = {"acc": open_sockets(acc.pid), "adder": open_sockets(adder.pid)}
    assert held["acc"] >= FLOOD and held["adder"] >= FLOOD, held  # every connection was accepted
    latencies = []
    for i in range(REQUESTS):
        started = time.perf_counter()
        status, body = acc.get("/api/total")
        latencies.append(time.perf_counter() - started)
        assert status == 200 and body.startswith(b'{"total":'), (status, body)
        if i % 100 == 0:
            trickle(conns)
    status, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200 and b"sumflow_grpc_requests" in body
    during = {"acc": proc_status(acc.pid), "adder": proc_status(adder.pid)}
    latencies.sort()
    p50, p99, worst = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1], latencies[-1]
    print(
        f"\n{FLOOD} idle/slow connections per port: /api/total p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {worst * 1000:.1f} ms over {REQUESTS} requests; threads {before} -> {during}"
    )
    assert p99 <= P99_BOUND_SECONDS, f"p99 {p99 * 1000:.1f} ms"
    for name in ("acc", "adder"):
        assert during[name]["Threads"] <= before[name]["Threads"] + MAX_EXTRA_THREADS, (name, before, during)
        assert during[name]["VmRSS"] - before[name]["VmRSS"] <= MAX_RSS_GROWTH_BYTES, (name, before, during)

    # the clients go quiet: the servers close their channels after the channel timeout
    give_up = time.monotonic() + CHANNEL_TIMEOUT_SECONDS * 4
    pids = (acc.pid, adder.pid)
    while time.monotonic() < give_up and max(open_sockets(pid) for pid in pids) > FLOOD // 10:
        time.sleep(0.5)
    remaining = [open_sockets(pid) for pid in pids]  # measured before the clients close theirs
    for sock in conns:
        sock.close()
    assert max(remaining) < FLOOD // 10, remaining
