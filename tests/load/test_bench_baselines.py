"""The benchmark's baselines and its exact-total check do what BENCHMARKS.md says they do.

Every adder target is a ratio to `benchmarks/bare_aio_adder.py` and every REST target a ratio to
`benchmarks/bare_rest.py`, so both must answer what the real services answer. The expected total of
a phase is the number of calls ghz saw answered OK (`--duration-stop wait`): checked here against
the events the real adder published and against what a real accumulator applied.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc

from benchmarks import run as bench
from benchmarks.procstats import tree_pids
from harness.env import adder_env, process_env
from harness.http_client import http_get, http_ok
from harness.kafka import KafkaBroker
from harness.ports import free_port
from harness.processes import AdderProcess, CommandProcess
from harness.topics import read_events
from load.generators import run_ghz
from sumflow.v1 import sum_pb2, sum_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


def test_bare_aio_server_adds_in_every_process(tmp_path: Path) -> None:
    target = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "benchmarks.bare_aio_adder", "--listen", target, "--processes", "2"]
    server = CommandProcess("bare-aio", argv, tmp_path, ready=lambda: bench.grpc_answers(target), cwd=REPO)
    with server.running(timeout=60):
        assert server.pid is not None
        # Two worker processes below the parent, both serving the port (SO_REUSEPORT).
        workers = [p for p in tree_pids(server.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2
        for n in range(20):
            with grpc.insecure_channel(target) as channel:  # a fresh connection: either worker answers
                rid = str(uuid.uuid4())
                reply = sum_pb2_grpc.SumServiceStub(channel).AddNumbers(
                    sum_pb2.AddNumbersRequest(request_id=rid, first_number=n, second_number=-7 * n), timeout=10
                )
            assert (reply.request_id, reply.result, reply.duplicate) == (rid, -6 * n, False)


def test_bare_rest_app_answers_the_given_body(tmp_path: Path) -> None:
    port = free_port()
    body = b'{"total":123456789,"applied":41152263}'
    argv = [sys.executable, "-m", "benchmarks.bare_rest", "--port", str(port), "--body", body.decode()]
    url = f"http://127.0.0.1:{port}/api/total"
    with CommandProcess("bare-rest", argv, tmp_path, ready=lambda: http_ok(url), cwd=REPO).running(timeout=60):
        assert http_get(url) == (200, body)
        assert http_get(f"http://127.0.0.1:{port}/other")[0] == 404


def test_ghz_ok_count_is_what_the_adder_published_and_the_accumulator_applied(
    kafka_broker: KafkaBroker, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory(prefix="benchcheck")
    settings = adder_env(
        kafka_broker.bootstrap, topic, tmp_path / "dedupe", grpc_port=free_port(), metrics_port=free_port()
    )
    adder = AdderProcess(process_env(settings), tmp_path / "adder")
    with adder.running(timeout=90):
        # 64 in flight on 16 connections for 1 s: calls still in flight at the end are waited for.
        res = run_ghz(adder.target, concurrency=64, duration_s=1, connections=16)
    assert res.ok > 0
    assert (res.errors, res.requests) == (0, res.ok)
    events = read_events(kafka_broker.bootstrap, topic)
    assert len(events) == res.ok
    assert sum(e["result"] for e in events) == bench.CALL_VALUE * res.ok

    check = bench.check_total(kafka_broker, tmp_path, topic, res.ok, "test")
    assert check == {
        "expected_applied": res.ok,
        "expected_total": bench.CALL_VALUE * res.ok,
        "applied": res.ok,
        "total": bench.CALL_VALUE * res.ok,
        "ok": True,
    }
    # One call more than were answered: the same accumulated state fails the check.
    assert not bench.total_check({"applied": res.ok, "total": 3 * res.ok}, res.ok + 1, 3 * (res.ok + 1))["ok"]


def _level(rps: float, cpu_us: float, p99: float) -> dict[str, object]:
    return {"rps": rps, "cpu_us_per_call": cpu_us, "p99_ms": p99, "p50_ms": p99 / 2, "errors": 0, "ok": 1000}


def _throughput(adder: dict[str, dict[str, object]]) -> dict[str, object]:
    """A throughput phase's result: `adder` per level against a bare server at 8,000 calls/s."""
    bare = {str(c): _level(8000, 100, 10) for c in bench.CONCURRENCY}
    return {
        "bare": bare,
        "adder": {c: {**row, "rss_peak_mib": 70.0} for c, row in adder.items()},
        "ratios": {c: bench.ratios(adder[c], bare[c]) for c in adder},
        "floor": {},
        "total_check": bench.total_check({"applied": 5, "total": 15}, 5, 15),
        "adder_ready_s": 0.6,
    }


def test_table_marks_each_ratio_against_its_target() -> None:
    tp = _throughput(
        {
            "16": _level(6400, 125, 20),  # exactly on every target
            "64": _level(6000, 130, 21),  # below on all three
            "256": _level(7000, 110, 15),
        }
    )
    results = {"throughput": {"1": tp, "2": {**tp, "adder": {c: {**r, "rps": 9000} for c, r in tp["adder"].items()}}}}
    rows = {line.split(" | ")[0].strip(): line for line in bench.table(results).splitlines()}

    for what in ("calls/s", "CPU/call", "p99"):
        assert rows[f"adder P=1 c=16 {what}"].endswith("PASS"), rows[f"adder P=1 c=16 {what}"]
        assert rows[f"adder P=1 c=64 {what}"].endswith("MISS"), rows[f"adder P=1 c=64 {what}"]
    assert "0.80x" in rows["adder P=1 c=16 calls/s"]
    assert "0.75x" in rows["adder P=1 c=64 calls/s"]
    assert rows["adder P=1 total"].endswith("PASS")
    assert rows["adder P=1 ready"].endswith("MISS")  # 0.6 s > 0.5 s
    assert rows["adder P=1 RSS"].endswith("PASS")
    # 9,000 / 7,000 = 1.29 < 0.8 x 2
    assert rows["scale-out P=2 / P=1"].endswith("MISS")
    assert "1.29x" in rows["scale-out P=2 / P=1"]


def test_table_marks_rest_freshness_and_catch_up_against_their_targets() -> None:
    def rest(rps: float, p99: float) -> dict[str, object]:
        return {"rps": rps, "p99_ms": p99, "p50_ms": p99 / 4, "errors": 0, "rss_peak_mib": 40.0}

    rows_by_conns = {
        "16": (rest(9000, 10.0), rest(10000, 10.0)),  # 0.90x, p99 equal: both PASS
        "64": (rest(8000, 12.0), rest(10000, 10.0)),  # 0.80x, p99 1.2x: both MISS
    }
    pipeline = {
        "fixed_rate": {
            "rate": 800,
            "rps": 800.0,
            "p99_ms": 20.0,
            "freshness_p50_ms": 5.0,
            "freshness_p99_ms": 101.0,  # just over 100 ms
            "freshness_samples": 100,
            "freshness_timeouts": 0,
            "accumulator_rss_peak_mib": 50.0,
        },
        "total_check": bench.total_check({"applied": 9, "total": 27}, 10, 30),  # one call missing
        "rest_total": {
            conns: {
                "accumulator": acc,
                "bare": bare,
                "ratios": {
                    "rps": bench.ratio(acc["rps"], bare["rps"]),
                    "p99": bench.ratio(acc["p99_ms"], bare["p99_ms"]),
                },
            }
            for conns, (acc, bare) in rows_by_conns.items()
        },
        "accumulator_ready_s": 0.4,
    }
    catchup = {
        "backlog": 1000,
        "accumulator_eps": 40_000,
        "bare_consumer_eps": 80_000,
        "ratio_vs_bare": 0.5,
        "accumulator_s_from_ready": 0.03,
        "accumulator_rss_peak_mib": 81.0,
        "total_check": bench.total_check({"applied": 1000, "total": 3000}, 1000, 3000),
    }
    rows = {
        line.split(" | ")[0].strip(): line.rsplit(" | ", 1)[1].strip()
        for line in bench.table({"pipeline": pipeline, "catchup": catchup}).splitlines()
    }
    assert rows["GET /api/total c=16 req/s"] == rows["GET /api/total c=16 p99"] == "PASS"
    assert rows["GET /api/total c=64 req/s"] == rows["GET /api/total c=64 p99"] == "MISS"
    assert rows["freshness at 800/s"] == "MISS"
    assert rows["pipeline total"] == "MISS"
    assert rows["accumulator ready"] == "PASS"
    assert rows["catch-up 1,000 events"] == "PASS"
    assert rows["catch-up total"] == "PASS"
    assert rows["accumulator RSS (catch-up)"] == "MISS"


def test_pinned_adder_runs_every_process_on_the_given_cpus(
    kafka_broker: KafkaBroker, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    cpu = min(os.sched_getaffinity(0))
    adder = bench.bench_adder(
        kafka_broker, topic_factory(prefix="pinned"), tmp_path, tmp_path / "dedupe", 2, cpu_list=str(cpu)
    )
    with adder.running(timeout=90):
        assert adder.pid is not None
        bench.wait_grpc(adder.target)
        affinity = bench.cpu_affinity(adder.pid)
        # The supervisor and its two workers (taskset execs the adder: the pid is the supervisor's).
        assert Path(f"/proc/{adder.pid}/exe").resolve().name.startswith("python")
        assert len(affinity) >= 3, affinity
        assert set(affinity.values()) == {str(cpu)}, affinity


def _attempt(rate: int, held: bool) -> dict[str, object]:
    return {"rate": rate, "held": held, "exact": True}


def test_sustained_search_steps_up_down_then_bisects_to_the_resolution() -> None:
    assert bench.next_sustained_rate([_attempt(800, True)]) == 1000  # x 1.25 after a rate that held
    assert bench.next_sustained_rate([_attempt(1000, False)]) == 700  # x 0.7 while none held
    assert bench.next_sustained_rate([_attempt(800, True), _attempt(1000, False)]) == 900  # between them
    tried = [_attempt(800, True), _attempt(1000, False), _attempt(900, False)]
    assert bench.next_sustained_rate(tried) == 850
    # Within 1.1x of each other: the search ends (at 800, the highest rate that held).
    assert bench.next_sustained_rate([*tried, _attempt(850, False)]) is None
    # A failure below a rate that held (noise) does not bound the search from above.
    assert bench.next_sustained_rate([_attempt(800, True), _attempt(700, False)]) == 1000


def _sustained_attempt(**overrides: object) -> dict[str, object]:
    fixed = {
        "rps": 990.0,
        "errors": 0,
        "p99_ms": 30.0,
        "freshness_p50_ms": 20.0,
        "freshness_p99_ms": 1000.0,
        "freshness_samples": 150,
        "freshness_timeouts": 0,
        **overrides,
    }
    check = bench.total_check({"applied": 1151, "total": 3 * 1000 + 151 * 10**12}, 1151, 3 * 1000 + 151 * 10**12)
    return bench.sustained_attempt(1000, {"fixed_rate": fixed, "total_check": check})


def test_a_sustained_rate_holds_only_exact_fresh_and_served() -> None:
    assert _sustained_attempt()["held"]  # freshness p99 exactly 1 s, 99% of the rate served
    assert not _sustained_attempt(freshness_p99_ms=1000.5)["held"]
    assert not _sustained_attempt(freshness_timeouts=1)["held"]
    assert not _sustained_attempt(rps=940.0)["held"]  # under 0.95 x the rate: calls queued or failed
    wrong = bench.total_check({"applied": 1151, "total": 3 * 1001 + 151 * 10**12}, 1151, 3 * 1000 + 151 * 10**12)
    assert not bench.sustained_held({**_sustained_attempt(), "exact": wrong["ok"]})
    assert _sustained_attempt()["accepted"] == _sustained_attempt()["counted"] == 1151


def test_table_reports_sustained_beside_peak_and_pinned_scale_out() -> None:
    level = _level(2000, 400, 30)
    throughput = {"2": _throughput({"16": level, "64": {**level, "rps": 2500}, "256": level})}
    sustained = {
        "processes": 2,
        "seconds": 60,
        "rate": 2000,
        "attempts": [
            {"rate": 2000, "held": True, "exact": True},
            {"rate": 2500, "held": False, "exact": True},
            {"rate": 2250, "held": False, "exact": None, "error": "RuntimeError()"},
        ],
    }
    check = bench.total_check({"applied": 5, "total": 15}, 5, 15)
    pinned = {
        "concurrency": 64,
        "ratio_p2_p1": bench.ratio(1700, 1000),
        "runs": {
            "1": {"cpu_list": "0", "level": _level(1000, 500, 40), "total_check": check},
            "2": {"cpu_list": "0,1", "level": _level(1700, 520, 35), "total_check": check},
        },
    }
    lines = bench.table({"throughput": throughput, "sustained": sustained, "pinned": pinned}).splitlines()
    rows = {line.split(" | ")[0].strip(): [cell.strip() for cell in line.split(" | ")[1:]] for line in lines}
    assert rows["sustained exact throughput P=2"] == [
        "report beside peak",
        "2,000/s for 60 s (peak 2,500/s, 0.80x)",
        "0.80x",
        "PASS",
    ]
    assert rows["sustained totals"][1:] == ["exact in 2 of 3 attempts", "", "PASS"]
    assert rows["pinned scale-out P=2 / P=1"][2:] == ["1.70x", "PASS"]  # >= 0.8 x 2
    assert rows["pinned P=1 c=64 (taskset -c 0)"][1] == "1,000 calls/s, 500us/call, p99 40.0ms"
    assert rows["pinned totals"][-1] == "PASS"

    none_held = {**sustained, "rate": None, "attempts": [{"rate": 900, "held": False, "exact": False}]}
    rows = {line.split(" | ")[0].strip(): line for line in bench.table({"sustained": none_held}).splitlines()}
    assert rows["sustained exact throughput P=2"].endswith("MISS")
    assert rows["sustained totals"].endswith("MISS")  # an inexact total is a failure whatever the rate
