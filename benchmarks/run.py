"""sumflow benchmarks on this machine: `make bench` (or `python -m benchmarks.run [--quick]`).

Starts a real single-node KRaft broker on loopback, the real services as subprocesses and, in the
same run, their bare baselines (a grpc.aio server that only adds, a bottle+waitress app answering the
same JSON, a bare kafka-python consumer), and drives them with ghz and wrk. Every target is a ratio
to its baseline (TARGETS); every phase checks that the accumulated total equals the sum of the calls
answered OK. Prints a table and writes benchmarks/results/latest.json. Every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from benchmarks.procstats import RssSampler, max_process_rss_mib, tree_cpu_seconds, tree_pids
from harness.env import accumulator_env, adder_env, process_env
from harness.http_client import http_get, http_ok
from harness.kafka import KafkaBroker, libs_dir
from harness.ports import free_port
from harness.processes import AccumulatorProcess, AdderProcess, CommandProcess, ServiceError, ServiceProcess
from load.backlog import produce_backlog, produce_backlog_java
from load.freshness import PROBE_UNIT, FreshnessProbe
from load.generators import LoadResult, ghz_binary, run_ghz, run_wrk, wrk_binary
from sumflow.v1 import sum_pb2, sum_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CONCURRENCY = (16, 64, 256)
CONNECTIONS = 16  # ghz connections at every level (fewer only below 16 calls in flight)
CALL_VALUE = 3  # every ghz call adds first_number 1 + second_number 2 (load.generators.FRESH_PAYLOAD)
# Every target is measured in the same run; the ratios are to the bare baselines of that run.
TARGETS = {
    "adder_vs_bare_min": 0.8,  # adder calls/s / bare grpc.aio calls/s, at each concurrency
    "adder_cpu_ratio_max": 1.25,  # adder CPU per call / bare CPU per call
    "adder_p99_ratio_max": 2.0,  # adder p99 / bare p99
    "scale_out_min": 0.8,  # peak calls/s at P=N >= this x N x peak at P=1
    "rest_vs_bare_min": 0.9,  # GET /api/total req/s / bare bottle+waitress req/s
    "rest_p99_ratio_max": 1.0,  # no worse than the bare app's p99
    "catchup_vs_bare_min": 0.5,  # accumulator events/s / bare kafka-python consumer events/s
    "freshness_p99_ms_max": 100,  # reply -> visible in the total, at fixed_rate_share of capacity
    "fixed_rate_share": 0.8,
    # Sustained exact throughput: a fixed rate holds when every accepted call is counted exactly once,
    # the freshness p99 stays at most this, no probe times out and ghz is served this share of the rate.
    "sustained_freshness_p99_ms_max": 1000,
    "sustained_served_min": 0.95,
    "rss_mib_max": 80,
    "ready_s_max": 0.5,
}
DEFAULT_FIXED_RATE = 1000  # calls/s for the pipeline when no throughput phase measured the capacity
# The sustained-rate search: the first rate is this share of the closed-model peak; after a rate that
# holds the next is UP x higher, after one that fails DOWN x lower, and once both are known it bisects
# until they are within RESOLUTION x of each other (or the attempts run out).
SUSTAINED_START_SHARE = 0.8
SUSTAINED_UP = 1.25
SUSTAINED_DOWN = 0.7
SUSTAINED_RESOLUTION = 1.1
PINNED_CONCURRENCY = 64  # the one ghz level of the pinned scale-out runs


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# Extra environment for every service a benchmark starts (run.py --service-env KEY=VALUE).
EXTRA_ENV: dict[str, str] = {}


def service_defaults() -> dict[str, str]:
    return {"SUMFLOW_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO")}


def new_topic(broker: KafkaBroker, prefix: str, partitions: int) -> str:
    """A fresh topic and its `.dlq` on the benchmark's broker."""
    name = f"bench-{prefix}-{uuid.uuid4().hex[:8]}"
    for topic in (name, f"{name}.dlq"):
        broker.create_topic(topic, partitions=partitions, replication=1)
    return name


def bench_adder(
    broker: KafkaBroker, topic: str, run_dir: Path, dedupe: Path, processes: int, cpu_list: str | None = None
) -> AdderProcess:
    """The real adder with its own notify socket: `ready_s` is spawn -> READY=1; `cpu_list` pins it
    and its worker processes to those CPUs (taskset -c)."""
    settings = adder_env(
        broker.bootstrap,
        topic,
        dedupe,
        grpc_port=free_port(),
        metrics_port=free_port(),
        defaults=service_defaults(),
        SUMFLOW_ADDER_PROCESSES=str(processes),
        # The batched design under test (v2 records); --service-env can set it back to 1.
        **{"SUMFLOW_PUBLISH_BATCH_MAX": "128", **EXTRA_ENV},
    )
    return AdderProcess(process_env(settings), run_dir, notify=True, cpu_list=cpu_list)


def bench_accumulator(
    broker: KafkaBroker, topic: str, run_dir: Path, state: Path, env: dict[str, str] | None = None
) -> AccumulatorProcess:
    settings = accumulator_env(
        broker.bootstrap,
        topic,
        state,
        http_port=free_port(),
        consumer_group=f"bench-{topic}",
        defaults=service_defaults(),
        **EXTRA_ENV,
    )
    return AccumulatorProcess(process_env({**settings, **(env or {})}), run_dir, notify=True)


def start_timed(service: ServiceProcess, timeout: float = 30.0) -> float:
    """Start and wait for READY=1; seconds from spawn to READY=1."""
    service.start(timeout)
    assert service.ready_s is not None
    return service.ready_s


def stop_timed(service: ServiceProcess, timeout: float = 30.0) -> None:
    """SIGTERM; after `timeout` the whole process tree is SIGKILLed (service.stop_killed)."""
    with contextlib.suppress(ServiceError):
        service.stop(timeout)


def grpc_answers(target: str) -> bool:
    """One AddNumbers call succeeds (a fresh id each time)."""
    with grpc.insecure_channel(target) as channel:
        try:
            sum_pb2_grpc.SumServiceStub(channel).AddNumbers(
                sum_pb2.AddNumbersRequest(request_id=str(uuid.uuid4()), first_number=1, second_number=2), timeout=5
            )
        except grpc.RpcError:
            return False
    return True


def wait_grpc(target: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not grpc_answers(target):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{target} answered no AddNumbers call in {timeout}s")
        time.sleep(0.1)


@contextlib.contextmanager
def bare_server(
    processes: int,
    run_dir: Path,
    *,
    python: str = sys.executable,
    workers: str | None = None,
    cpu_list: str | None = None,
) -> Iterator[tuple[str, int]]:
    """The bare grpc.aio adding server (benchmarks/bare_aio_adder.py), with the adder's worker setting
    unless `workers` is given ("0": no concurrency limit), run by `python`, pinned to `cpu_list`."""
    target = f"127.0.0.1:{free_port()}"
    workers = workers or EXTRA_ENV.get("SUMFLOW_GRPC_WORKERS", "64")
    argv = [python, "-m", "benchmarks.bare_aio_adder", "--listen", target]
    argv += ["--processes", str(processes), "--workers", workers]
    name = f"bare-aio-{processes}"
    server = CommandProcess(name, argv, run_dir, ready=lambda: grpc_answers(target), cwd=REPO, cpu_list=cpu_list)
    with server.running(timeout=30):
        assert server.pid is not None
        yield target, server.pid


# The floor servers (benchmarks/floor_adder.py): the least work the mandated libraries allow per call.
FLOORS = {
    "diskcache only": ["--no-kafka"],
    "kafka-python only": ["--no-dedupe"],
    "diskcache + kafka-python": [],
}


@contextlib.contextmanager
def floor_server(broker: KafkaBroker, run_dir: Path, label: str, flags: list[str]) -> Iterator[tuple[str, int]]:
    target = f"127.0.0.1:{free_port()}"
    topic = new_topic(broker, "floor", 1)
    state = run_dir / f"floor-{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "-m", "benchmarks.floor_adder", "--listen", target, "--bootstrap", broker.bootstrap]
    argv += ["--topic", topic, "--dir", str(state), *flags]
    name = "floor-" + label.replace(" ", "").replace("+", "-")
    server = CommandProcess(name, argv, run_dir, ready=lambda: grpc_answers(target), cwd=REPO)
    with server.running(timeout=30):
        assert server.pid is not None
        yield target, server.pid


def level(target: str, concurrency: int, duration: float, pid: int) -> dict[str, Any]:
    """One closed-model ghz level: calls/s, latency, and the server's CPU per call and peak RSS."""
    cpu_before = tree_cpu_seconds(pid)
    with RssSampler(pid) as rss:
        res = run_ghz(target, concurrency=concurrency, duration_s=duration, connections=CONNECTIONS)
    cpu = tree_cpu_seconds(pid) - cpu_before
    return {
        **res.as_dict(),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_call": round(cpu / res.ok * 1e6, 1) if res.ok else None,
        "rss_peak_mib": round(rss.peak, 1),
    }


def ladder(
    target: str, duration: float, processes: int, pid: int, label: str, levels: tuple[int, ...] = CONCURRENCY
) -> tuple[dict[str, Any], int]:
    """ghz at each concurrency level (fresh UUID per call, in-flight calls waited for) after a warm-up.

    Returns the levels and the number of calls answered OK in all of them, the warm-up included.
    """
    ok = run_ghz(target, concurrency=16, duration_s=2, connections=CONNECTIONS).ok  # warm-up
    out: dict[str, Any] = {}
    for c in levels:
        row = level(target, c, duration, pid)
        out[str(c)] = row
        ok += row["ok"]
        log(
            f"  {label} P={processes} c={c}: {row['rps']:.0f}/s p50={row['p50_ms']:.1f}ms p99={row['p99_ms']:.1f}ms"
            f" cpu/call={row['cpu_us_per_call']}us err={row['errors']}"
        )
    return out, ok


def check_total(broker: KafkaBroker, run_dir: Path, topic: str, calls: int, label: str) -> dict[str, Any]:
    """An accumulator reads the adder's topic: it must apply exactly `calls` events, total CALL_VALUE each."""
    acc = bench_accumulator(broker, topic, run_dir, run_dir / f"acc-check-{label}")
    try:
        start_timed(acc, timeout=60)
        with contextlib.suppress(ServiceError):
            acc.wait_applied(calls, timeout=max(60.0, calls / 2_000))
        time.sleep(0.5)  # an event beyond the expected ones would show up now
        got = acc.total()
    finally:
        stop_timed(acc)
    return total_check(got, calls, CALL_VALUE * calls)


def total_check(got: dict[str, int], calls: int, total: int) -> dict[str, Any]:
    return {
        "expected_applied": calls,
        "expected_total": total,
        "applied": got.get("applied"),
        "total": got.get("total"),
        "ok": got.get("applied") == calls and got.get("total") == total,
    }


def phase_throughput(
    broker: KafkaBroker, run_dir: Path, processes: int, duration: float, partitions: int, floor: bool = True
) -> dict[str, Any]:
    log(f"bare grpc.aio adding server, {processes} process(es)")
    with bare_server(processes, run_dir) as (target, pid):
        bare, _ = ladder(target, duration, processes, pid, "bare")
    floors: dict[str, dict[str, Any]] = {}
    if processes == 1 and floor:
        for label, flags in FLOORS.items():
            log(f"floor server, 1 process: {label}")
            with floor_server(broker, run_dir, label, flags) as (target, pid):
                floors[label], _ = ladder(target, duration, processes, pid, "floor")
    log(f"sumflow-adder, {processes} process(es), persistent dedupe + acks=all")
    real = adder_ladder(broker, run_dir, processes, duration, partitions, f"P{processes}")
    levels = real.pop("levels")
    return {
        "bare": bare,
        "adder": levels,
        "ratios": {c: ratios(levels[c], bare[c]) for c in levels},
        "floor": floors,
        **real,
    }


def adder_ladder(
    broker: KafkaBroker,
    run_dir: Path,
    processes: int,
    duration: float,
    partitions: int,
    label: str,
    levels: tuple[int, ...] = CONCURRENCY,
    cpu_list: str | None = None,
) -> dict[str, Any]:
    """The real adder on a fresh topic through `ladder`, then its total checked by an accumulator."""
    topic = new_topic(broker, "adder", partitions)
    adder = bench_adder(broker, topic, run_dir, run_dir / f"dedupe-{label}", processes, cpu_list)
    try:
        ready_s = start_timed(adder)
        wait_grpc(adder.target)
        time.sleep(1)
        assert adder.pid is not None
        idle = max_process_rss_mib(adder.pid)
        affinity = cpu_affinity(adder.pid)
        result, ok = ladder(adder.target, duration, processes, adder.pid, "adder", levels)
    finally:
        stop_timed(adder)
    log(f"  checking the total: {ok + 1:,} calls answered OK")
    check = check_total(broker, run_dir, topic, ok + 1, label)  # + wait_grpc's call
    log(f"  total {check['total']} applied {check['applied']}: {'exact' if check['ok'] else 'WRONG'}")
    return {
        "levels": result,
        "total_check": check,
        "adder_ready_s": round(ready_s, 3),
        "adder_rss_idle_mib": round(idle, 1),
        "adder_cpu_affinity": affinity,
        "adder_stop_s": adder.stop_s,
        "adder_stop_killed": adder.stop_killed,
    }


def cpu_affinity(pid: int) -> dict[str, str]:
    """The CPUs each process of the tree may run on (`taskset -c` form), by pid."""
    out: dict[str, str] = {}
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            out[str(p)] = ",".join(map(str, sorted(os.sched_getaffinity(p))))
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def ratios(adder: dict[str, Any], bare: dict[str, Any]) -> dict[str, float | None]:
    """The adder's calls/s, CPU per call and p99 as ratios to the bare server's at one level."""
    return {
        "rps": ratio(adder["rps"], bare["rps"]),
        "cpu_per_call": ratio(adder["cpu_us_per_call"], bare["cpu_us_per_call"]),
        "p99": ratio(adder["p99_ms"], bare["p99_ms"]),
    }


def capacity(throughput: dict[str, Any] | None) -> float | None:
    """The adder's measured capacity: its best calls/s over the concurrency levels."""
    if not throughput:
        return None
    return max(level["rps"] for level in throughput["adder"].values())


def fixed_rate(target: str, http_port: int, rate: int, duration: float, adder_pid: int, acc_pid: int) -> dict[str, Any]:
    """ghz at a fixed rate (open model) with the freshness probe beside it."""
    log(f"fixed {rate} calls/s for {duration}s with the freshness probe")
    probe = FreshnessProbe(target, http_port, budget_s=duration)
    result: dict[str, LoadResult] = {}
    load = threading.Thread(
        target=lambda: result.setdefault(
            "ghz", run_ghz(target, concurrency=128, duration_s=duration, connections=CONNECTIONS, rps=rate)
        )
    )
    with RssSampler(adder_pid) as adder_rss, RssSampler(acc_pid) as acc_rss:
        load.start()
        probe.start()
        load.join(duration + 90)
        probe.join(30)
    if probe.error is not None:
        raise RuntimeError(f"freshness probe failed: {probe.error!r}")
    fixed = result["ghz"]
    samples = sorted(probe.samples_ms)
    out = {
        **fixed.as_dict(),
        "rate": rate,
        "probe_calls": probe.sent,
        "freshness_samples": len(samples),
        "freshness_timeouts": probe.timeouts,
        "freshness_p50_ms": round(statistics.median(samples), 2) if samples else None,
        "freshness_p99_ms": round(samples[min(len(samples) - 1, int(0.99 * len(samples)))], 2) if samples else None,
        "adder_rss_peak_mib": round(adder_rss.peak, 1),
        "accumulator_rss_peak_mib": round(acc_rss.peak, 1),
    }
    log(
        f"  {rate}/s: {fixed.rps:.0f} calls/s p99={fixed.p99_ms:.1f}ms err={fixed.errors}; freshness "
        f"p50={out['freshness_p50_ms']}ms p99={out['freshness_p99_ms']}ms (n={len(samples)})"
    )
    return out


@contextlib.contextmanager
def bare_rest(run_dir: Path, body: bytes, threads: str) -> Iterator[tuple[str, int]]:
    """The bare bottle+waitress app (benchmarks/bare_rest.py) answering `body` with `threads` threads."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/total"
    argv = [sys.executable, "-m", "benchmarks.bare_rest", "--port", str(port), "--body", body.decode()]
    argv += ["--threads", threads]
    server = CommandProcess("bare-rest", argv, run_dir, ready=lambda: http_ok(url), cwd=REPO)
    with server.running(timeout=30):
        assert server.pid is not None
        yield url, server.pid


def rest_level(url: str, connections: int, duration: int, pid: int) -> dict[str, Any]:
    with RssSampler(pid) as rss:
        res = run_wrk(url, connections=connections, duration_s=duration)
    return {**res.as_dict(), "rss_peak_mib": round(rss.peak, 1)}


def phase_pipeline(
    broker: KafkaBroker,
    run_dir: Path,
    processes: int,
    duration: float,
    rest_duration: int,
    partitions: int,
    rate: int,
) -> dict[str, Any]:
    """A fixed rate with the freshness probe, the total checked, then GET /api/total against the bare app."""
    out: dict[str, Any] = {}
    with adder_and_accumulator(broker, run_dir, processes, partitions, "pipeline", out) as (adder, acc):
        http_port = acc.http_port
        assert acc.pid is not None
        out.update(checked_fixed_rate(adder, acc, rate, duration))
        url = f"http://127.0.0.1:{http_port}/api/total"
        status, body = http_get(url)
        if status != 200:
            raise RuntimeError(f"GET /api/total -> {status}")
        threads = acc.env.get("SUMFLOW_HTTP_THREADS", "8")
        rest: dict[str, Any] = {}
        for conns in (16, 64):
            rest[str(conns)] = {"accumulator": rest_level(url, conns, rest_duration, acc.pid)}
        with bare_rest(run_dir, body, threads) as (bare_url, bare_pid):
            for conns in (16, 64):
                bare = rest_level(bare_url, conns, rest_duration, bare_pid)
                row = rest[str(conns)]
                row["bare"] = {k: v for k, v in bare.items() if k != "rss_peak_mib"}
                row["ratios"] = {
                    "rps": ratio(row["accumulator"]["rps"], bare["rps"]),
                    "p99": ratio(row["accumulator"]["p99_ms"], bare["p99_ms"]),
                }
                a = row["accumulator"]
                log(
                    f"  GET /api/total c={conns}: {a['rps']:.0f} req/s p99={a['p99_ms']:.1f}ms err={a['errors']};"
                    f" bare {bare['rps']:.0f} req/s p99={bare['p99_ms']:.1f}ms"
                )
        out["rest_total"] = rest
        out["rest_body_bytes"] = len(body)
        out["final_total"] = acc.total()
    return out


@contextlib.contextmanager
def adder_and_accumulator(
    broker: KafkaBroker, run_dir: Path, processes: int, partitions: int, label: str, out: dict[str, Any]
) -> Iterator[tuple[AdderProcess, AccumulatorProcess]]:
    """A fresh topic, the adder and an accumulator on it, both ready and the adder answering (one call).

    Ready times and idle RSS go into `out` on the way in, stop times on the way out.
    """
    topic = new_topic(broker, label, partitions)
    adder = bench_adder(broker, topic, run_dir, run_dir / f"dedupe-{label}", processes)
    acc = bench_accumulator(broker, topic, run_dir, run_dir / f"acc-{label}")
    try:
        out["adder_ready_s"] = round(start_timed(adder), 3)
        out["accumulator_ready_s"] = round(start_timed(acc), 3)
        time.sleep(1)
        out["accumulator_rss_idle_mib"] = round(max_process_rss_mib(acc.pid), 1)
        wait_grpc(adder.target)
        yield adder, acc
    finally:
        stop_timed(acc)
        stop_timed(adder)
        out["stop_s"] = {"adder": adder.stop_s, "accumulator": acc.stop_s}
        out["stop_killed"] = {"adder": adder.stop_killed, "accumulator": acc.stop_killed}


def checked_fixed_rate(adder: AdderProcess, acc: AccumulatorProcess, rate: int, duration: float) -> dict[str, Any]:
    """`fixed_rate` on services fresh from `adder_and_accumulator`, then the accumulator must hold
    exactly the calls answered OK (CALL_VALUE each, + wait_grpc's call) and the probes (PROBE_UNIT each)."""
    assert adder.pid is not None and acc.pid is not None
    fr = fixed_rate(adder.target, acc.http_port, rate, duration, adder.pid, acc.pid)
    calls = fr["ok"] + 1  # + wait_grpc's call
    expected = total_check({}, calls + fr["probe_calls"], CALL_VALUE * calls + PROBE_UNIT * fr["probe_calls"])
    with contextlib.suppress(ServiceError):
        acc.wait_applied(expected["expected_applied"], timeout=60)
    time.sleep(0.5)  # an event beyond the expected ones would show up now
    check = total_check(acc.total(), expected["expected_applied"], expected["expected_total"])
    log(f"  total check: {'exact' if check['ok'] else 'WRONG'} {check}")
    return {"fixed_rate": fr, "total_check": check}


def phase_sustained(
    broker: KafkaBroker, run_dir: Path, processes: int, partitions: int, start: int, seconds: float, attempts: int
) -> dict[str, Any]:
    """The highest fixed rate that holds for `seconds` (`sustained_held`), searched from `start` in at
    most `attempts` runs, each on a fresh topic with a fresh adder and accumulator."""
    tried: list[dict[str, Any]] = []
    rate: int | None = start
    while rate is not None and len(tried) < attempts:
        n = len(tried) + 1
        log(f"sustained: attempt {n}/{attempts} at {rate}/s for {seconds:g}s, P={processes}")
        try:
            with adder_and_accumulator(broker, run_dir, processes, partitions, f"sustained{n}", {}) as (adder, acc):
                attempt = sustained_attempt(rate, checked_fixed_rate(adder, acc, rate, seconds))
        except Exception as exc:  # an overloaded attempt (a probe call failing) is a rate that did not hold
            log(f"  attempt at {rate}/s failed: {exc!r}")
            attempt = {"rate": rate, "error": repr(exc), "exact": None, "held": False}
        tried.append(attempt)
        log(f"  {rate}/s {'held' if attempt['held'] else 'did not hold'}")
        rate = next_sustained_rate(tried)
    held = [a["rate"] for a in tried if a["held"]]
    return {
        "processes": processes,
        "seconds": seconds,
        "start_rate": start,
        "rate": max(held, default=None),
        "attempts": tried,
    }


def sustained_attempt(rate: int, run: dict[str, Any]) -> dict[str, Any]:
    """One attempt's record: the calls accepted (answered OK, probes included) and counted (applied)."""
    fr, check = run["fixed_rate"], run["total_check"]
    attempt = {
        "rate": rate,
        "served_rps": round(fr["rps"], 1),
        "accepted": check["expected_applied"],
        "counted": check["applied"],
        "exact": check["ok"],
        "errors": fr["errors"],
        "call_p99_ms": fr["p99_ms"],
        "freshness_p50_ms": fr["freshness_p50_ms"],
        "freshness_p99_ms": fr["freshness_p99_ms"],
        "freshness_samples": fr["freshness_samples"],
        "freshness_timeouts": fr["freshness_timeouts"],
        "total_check": check,
    }
    return {**attempt, "held": sustained_held(attempt)}


def sustained_held(attempt: dict[str, Any]) -> bool:
    """Exact total, freshness p99 within the bound with no probe lost, and the rate actually served."""
    t = TARGETS
    p99 = attempt["freshness_p99_ms"]
    return bool(
        attempt["exact"]
        and attempt["freshness_timeouts"] == 0
        and p99 is not None
        and p99 <= t["sustained_freshness_p99_ms_max"]
        and attempt["served_rps"] >= t["sustained_served_min"] * attempt["rate"]
    )


def next_sustained_rate(attempts: list[dict[str, Any]]) -> int | None:
    """The next rate to try, or None once the highest holding and lowest failing rates are close."""
    held = [a["rate"] for a in attempts if a["held"]]
    failed = [a["rate"] for a in attempts if not a["held"]]
    low = max(held, default=None)
    high = min((r for r in failed if low is None or r > low), default=None)
    if low is None:
        return max(1, round(min(failed) * SUSTAINED_DOWN))
    if high is None:
        return round(low * SUSTAINED_UP)
    if high <= low * SUSTAINED_RESOLUTION:
        return None
    return round((low + high) / 2)


def phase_pinned(broker: KafkaBroker, run_dir: Path, duration: float, partitions: int) -> dict[str, Any]:
    """The adder pinned with taskset: P=1 on one CPU, P=2 on two, one ghz level each, totals checked."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise RuntimeError(f"the pinned scale-out needs 2 CPUs; this run may use {cpus}")
    plan = {1: str(cpus[0]), 2: f"{cpus[0]},{cpus[1]}"}
    pinned = (
        f"the adder's processes only (taskset -c {plan[1]} at P=1, -c {plan[2]} at P=2);"
        " ghz, the broker and the total-check accumulator are not pinned"
    )
    log(f"pinned scale-out at c={PINNED_CONCURRENCY}: {pinned}")
    runs: dict[str, Any] = {}
    for processes, cpu_list in plan.items():
        log(f"sumflow-adder, {processes} process(es) pinned to CPU(s) {cpu_list}")
        run = adder_ladder(
            broker, run_dir, processes, duration, partitions, f"pinned-P{processes}", (PINNED_CONCURRENCY,), cpu_list
        )
        log(f"  CPUs per process: {run['adder_cpu_affinity']}")
        runs[str(processes)] = {"cpu_list": cpu_list, "level": run.pop("levels")[str(PINNED_CONCURRENCY)], **run}
    one, two = runs["1"]["level"], runs["2"]["level"]
    share = ratio(two["rps"], one["rps"])
    log(
        f"  pinned P=2 / P=1: {fmt(share, 'x', 2)}; CPU/call {one['cpu_us_per_call']}us (P=1),"
        f" {two['cpu_us_per_call']}us (P=2)"
    )
    return {"concurrency": PINNED_CONCURRENCY, "pinned": pinned, "runs": runs, "ratio_p2_p1": share}


NO_CRC32C = REPO / "benchmarks" / "no_crc32c"


def _bare_consume_subprocess(bootstrap: str, topic: str, count: int, env: dict[str, str]) -> float:
    code = (
        "import sys; from benchmarks.bare_consumer import bare_consume;"
        " print(bare_consume(sys.argv[1], sys.argv[2], int(sys.argv[3])))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, bootstrap, topic, str(count)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return float(proc.stdout.strip().splitlines()[-1])


def _catchup_once(
    broker: KafkaBroker, run_dir: Path, topic: str, backlog: int, label: str, env: dict[str, str]
) -> dict[str, Any]:
    bare_eps = _bare_consume_subprocess(broker.bootstrap, topic, backlog, env)
    log(f"  [{label}] bare kafka-python consumer: {bare_eps:,.0f} events/s")
    acc = bench_accumulator(broker, topic, run_dir, run_dir / f"acc-backlog-{label}", env)
    started = time.monotonic()
    try:
        ready_s = start_timed(acc, timeout=60)
        with RssSampler(acc.pid) as rss:
            # Bounded: at the deadline the rate so far is reported (complete=False) instead.
            deadline = started + max(120.0, backlog / 2_000)
            applied = 0
            while applied < backlog and time.monotonic() < deadline:
                time.sleep(0.2)
                applied = acc.total()["applied"]
            done = time.monotonic()
        total = acc.total()
    finally:
        stop_timed(acc, timeout=60)
    from_ready = done - started - ready_s
    eps = applied / from_ready
    log(f"  [{label}] accumulator: {applied:,} applied in {from_ready:.1f}s after ready ({eps:,.0f} events/s)")
    return {
        "bare_consumer_eps": round(bare_eps),
        "accumulator_ready_s": round(ready_s, 3),
        "accumulator_s_from_start": round(done - started, 2),
        "accumulator_s_from_ready": round(from_ready, 2),
        "accumulator_eps": round(eps),
        "ratio_vs_bare": round(eps / bare_eps, 3),
        "accumulator_rss_peak_mib": round(rss.peak, 1),
        "complete": applied >= backlog,
        "applied": applied,
        "total_check": total_check(total, backlog, CALL_VALUE * backlog),
        "accumulator_stop_s": acc.stop_s,
        "accumulator_stop_killed": acc.stop_killed,
    }


def phase_catchup(
    broker: KafkaBroker, run_dir: Path, backlog: int, partitions: int, compare_crc: bool
) -> dict[str, Any]:
    topic = new_topic(broker, "backlog", partitions)
    log(f"producing a backlog of {backlog:,} events")
    # The Java source launcher needs a JDK (javac); the JRE alone falls back to kafka-python (slower).
    if os.environ.get("BENCH_PYTHON_PRODUCER") or shutil.which("javac") is None:
        producer = "kafka-python"
        produce_s = produce_backlog(broker.bootstrap, topic, backlog)
    else:
        producer = "Java"
        produce_s = produce_backlog_java(broker.bootstrap, topic, backlog, libs_dir())
    log(f"  produced in {produce_s:.1f}s ({backlog / produce_s:,.0f}/s, {producer} producer)")
    out = {"backlog": backlog, "produce_s": round(produce_s, 2), "producer": producer}
    out.update(_catchup_once(broker, run_dir, topic, backlog, "crc32c", {}))
    if compare_crc:
        hidden = {"PYTHONPATH": os.pathsep.join(filter(None, [str(NO_CRC32C), os.environ.get("PYTHONPATH")]))}
        out["pure_python_crc"] = _catchup_once(broker, run_dir, topic, backlog, "pure-python-crc", hidden)
    return out


def fmt(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def status(ok: bool | None) -> str:
    """PASS / MISS against a target; n/a when the run has no number for it."""
    return "n/a" if ok is None else "PASS" if ok else "MISS"


def at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


Row = tuple[str, str, str, str, str]  # what, target, measured, ratio, status


def throughput_rows(procs: str, tp: dict[str, Any]) -> list[Row]:
    t = TARGETS
    rows: list[Row] = []
    for c in map(str, CONCURRENCY):
        a, b, r = tp["adder"][c], tp["bare"][c], tp["ratios"][c]
        rows += [
            (
                f"adder P={procs} c={c} calls/s",
                f">= {t['adder_vs_bare_min']}x bare",
                f"{fmt(a['rps'])} vs bare {fmt(b['rps'])}",
                fmt(r["rps"], "x", 2),
                status(at_least(r["rps"], t["adder_vs_bare_min"])),
            ),
            (
                f"adder P={procs} c={c} CPU/call",
                f"<= {t['adder_cpu_ratio_max']}x bare",
                f"{fmt(a['cpu_us_per_call'], 'us')} vs bare {fmt(b['cpu_us_per_call'], 'us')}",
                fmt(r["cpu_per_call"], "x", 2),
                status(at_most(r["cpu_per_call"], t["adder_cpu_ratio_max"])),
            ),
            (
                f"adder P={procs} c={c} p99",
                f"<= {t['adder_p99_ratio_max']}x bare",
                f"{fmt(a['p99_ms'], 'ms', 1)} vs bare {fmt(b['p99_ms'], 'ms', 1)}",
                fmt(r["p99"], "x", 2),
                status(at_most(r["p99"], t["adder_p99_ratio_max"])),
            ),
        ]
    for label, levels in tp.get("floor", {}).items():
        for c in map(str, CONCURRENCY):
            f, b = levels[c], tp["bare"][c]
            rows.append(
                (
                    f"floor P=1 c={c}: {label}",
                    "(bound)",
                    f"{fmt(f['rps'])}/s, {fmt(f['cpu_us_per_call'], 'us')}/call",
                    fmt(ratio(f["rps"], b["rps"]), "x", 2),
                    "",
                )
            )
    check = tp["total_check"]
    rows.append(
        (
            f"adder P={procs} total",
            "= calls answered OK",
            f"applied {check['applied']} of {check['expected_applied']}, total {check['total']}",
            "",
            status(check["ok"]),
        )
    )
    rss = max(tp["adder"][c]["rss_peak_mib"] for c in map(str, CONCURRENCY))
    rows += [
        (
            f"adder P={procs} ready",
            f"<= {t['ready_s_max']}s",
            f"{tp['adder_ready_s']}s",
            "",
            status(at_most(tp["adder_ready_s"], t["ready_s_max"])),
        ),
        (
            f"adder P={procs} RSS",
            f"<= {t['rss_mib_max']} MiB",
            f"peak {rss} MiB",
            "",
            status(at_most(rss, t["rss_mib_max"])),
        ),
    ]
    return rows


def scale_out_rows(throughput: dict[str, Any]) -> list[Row]:
    one = capacity(throughput.get("1"))
    rows: list[Row] = []
    for procs, tp in throughput.items():
        n = int(procs)
        if n == 1 or one is None:
            continue
        share = ratio(capacity(tp), one)
        rows.append(
            (
                f"scale-out P={n} / P=1",
                f">= {TARGETS['scale_out_min'] * n:.1f}x",
                f"peak {fmt(capacity(tp))} vs {fmt(one)} calls/s",
                fmt(share, "x", 2),
                status(at_least(share, TARGETS["scale_out_min"] * n)),
            )
        )
    return rows


def pinned_rows(pin: dict[str, Any]) -> list[Row]:
    c = pin["concurrency"]
    rows: list[Row] = []
    for procs, run in pin["runs"].items():
        lv = run["level"]
        rows.append(
            (
                f"pinned P={procs} c={c} (taskset -c {run['cpu_list']})",
                "(measured)",
                f"{fmt(lv['rps'])} calls/s, {fmt(lv['cpu_us_per_call'], 'us')}/call, p99 {fmt(lv['p99_ms'], 'ms', 1)}",
                "",
                "",
            )
        )
    one, two = pin["runs"]["1"]["level"], pin["runs"]["2"]["level"]
    share = pin["ratio_p2_p1"]
    checks = [run["total_check"]["ok"] for run in pin["runs"].values()]
    rows += [
        (
            "pinned scale-out P=2 / P=1",
            f">= {TARGETS['scale_out_min'] * 2:.1f}x",
            f"{fmt(two['rps'])} vs {fmt(one['rps'])} calls/s (adder pinned; ghz, broker not)",
            fmt(share, "x", 2),
            status(at_least(share, TARGETS["scale_out_min"] * 2)),
        ),
        (
            "pinned totals",
            "= calls answered OK",
            f"exact in {sum(checks)} of {len(checks)} runs",
            "",
            status(all(checks)),
        ),
    ]
    return rows


def sustained_rows(sus: dict[str, Any], throughput: dict[str, Any]) -> list[Row]:
    """The rate found beside the closed-model peak at the same process count (when measured)."""
    peak = capacity(throughput.get(str(sus["processes"])))
    rate, attempts = sus["rate"], sus["attempts"]
    tried = ", ".join(f"{a['rate']}{'' if a['held'] else ' no'}" for a in attempts)
    if rate is None:
        measured = f"no rate held ({tried})"
    elif peak is None:
        measured = f"{fmt(rate)}/s for {sus['seconds']:g} s (peak not measured in this run)"
    else:
        measured = f"{fmt(rate)}/s for {sus['seconds']:g} s (peak {fmt(peak)}/s, {fmt(ratio(rate, peak), 'x', 2)})"
    checked = [a["exact"] for a in attempts if a["exact"] is not None]
    return [
        (
            f"sustained exact throughput P={sus['processes']}",
            "report beside peak",
            measured,
            fmt(ratio(rate, peak), "x", 2),
            status(rate is not None),
        ),
        (
            "sustained totals",
            "= calls answered OK",
            f"exact in {sum(checked)} of {len(attempts)} attempts",
            "",
            status(all(checked) if checked else None),
        ),
    ]


def pipeline_rows(pipe: dict[str, Any]) -> list[Row]:
    t = TARGETS
    fr = pipe["fixed_rate"]
    check = pipe["total_check"]
    rows: list[Row] = [
        (
            f"freshness at {fr['rate']}/s",
            f"p99 <= {t['freshness_p99_ms_max']}ms",
            f"p50 {fmt(fr['freshness_p50_ms'], 'ms', 1)} p99 {fmt(fr['freshness_p99_ms'], 'ms', 1)}"
            f" (n={fr['freshness_samples']}, timeouts {fr['freshness_timeouts']}, {fmt(fr['rps'])} calls/s,"
            f" call p99 {fmt(fr['p99_ms'], 'ms', 1)})",
            "",
            status(False if fr["freshness_timeouts"] else at_most(fr["freshness_p99_ms"], t["freshness_p99_ms_max"])),
        ),
        (
            "pipeline total",
            "= calls answered OK",
            f"applied {check['applied']} of {check['expected_applied']}",
            "",
            status(check["ok"]),
        ),
    ]
    for conns, row in pipe["rest_total"].items():
        a, b, r = row["accumulator"], row["bare"], row["ratios"]
        rows += [
            (
                f"GET /api/total c={conns} req/s",
                f">= {t['rest_vs_bare_min']}x bare",
                f"{fmt(a['rps'])} vs bare {fmt(b['rps'])}, errors {a['errors']}",
                fmt(r["rps"], "x", 2),
                status(at_least(r["rps"], t["rest_vs_bare_min"]) and a["errors"] == 0),
            ),
            (
                f"GET /api/total c={conns} p99",
                f"<= {t['rest_p99_ratio_max']}x bare",
                f"{fmt(a['p99_ms'], 'ms', 2)} vs bare {fmt(b['p99_ms'], 'ms', 2)}",
                fmt(r["p99"], "x", 2),
                status(at_most(r["p99"], t["rest_p99_ratio_max"])),
            ),
        ]
    acc_rss = max(
        [fr["accumulator_rss_peak_mib"]] + [row["accumulator"]["rss_peak_mib"] for row in pipe["rest_total"].values()]
    )
    rows += [
        (
            "accumulator ready",
            f"<= {t['ready_s_max']}s",
            f"{pipe['accumulator_ready_s']}s",
            "",
            status(at_most(pipe["accumulator_ready_s"], t["ready_s_max"])),
        ),
        (
            "accumulator RSS (pipeline)",
            f"<= {t['rss_mib_max']} MiB",
            f"peak {acc_rss} MiB",
            "",
            status(at_most(acc_rss, t["rss_mib_max"])),
        ),
    ]
    return rows


def catchup_rows(cu: dict[str, Any]) -> list[Row]:
    t = TARGETS
    rows: list[Row] = [
        (
            f"catch-up {cu['backlog']:,} events",
            f">= {t['catchup_vs_bare_min']}x bare",
            f"{fmt(cu['accumulator_eps'])} vs bare {fmt(cu['bare_consumer_eps'])} events/s"
            f" ({cu['accumulator_s_from_ready']}s)",
            fmt(cu["ratio_vs_bare"], "x", 2),
            status(at_least(cu["ratio_vs_bare"], t["catchup_vs_bare_min"]) and cu.get("complete", True)),
        ),
        (
            "catch-up total",
            "= events produced",
            f"applied {cu['total_check']['applied']} of {cu['total_check']['expected_applied']}",
            "",
            status(cu["total_check"]["ok"]),
        ),
        (
            "accumulator RSS (catch-up)",
            f"<= {t['rss_mib_max']} MiB",
            f"peak {cu['accumulator_rss_peak_mib']} MiB",
            "",
            status(at_most(cu["accumulator_rss_peak_mib"], t["rss_mib_max"])),
        ),
    ]
    before = cu.get("pure_python_crc")
    if before:
        rows.append(
            (
                "catch-up, pure-Python CRC",
                "(before)",
                f"{fmt(before['accumulator_eps'])} vs bare {fmt(before['bare_consumer_eps'])} events/s",
                fmt(before["ratio_vs_bare"], "x", 2),
                "",
            )
        )
    return rows


def table(results: dict[str, Any]) -> str:
    """One row per target: what, target, measured, ratio, PASS/MISS."""
    rows: list[Row] = [("what", "target", "measured", "ratio", "status")]
    throughput = results.get("throughput", {})
    for procs, tp in throughput.items():
        rows += throughput_rows(procs, tp)
    rows += scale_out_rows(throughput)
    if results.get("pinned"):
        rows += pinned_rows(results["pinned"])
    if results.get("pipeline"):
        rows += pipeline_rows(results["pipeline"])
    if results.get("sustained"):
        rows += sustained_rows(results["sustained"], throughput)
    if results.get("catchup"):
        rows += catchup_rows(results["catchup"])
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def guarded(results: dict[str, Any], name: str, phase: Any) -> None:
    """Run one phase; a failure is recorded in the results and the other phases still run."""
    try:
        phase()
    except Exception as exc:
        log(f"phase {name} FAILED: {exc!r}")
        results.setdefault("errors", {})[name] = repr(exc)


PHASES = ("throughput", "pinned", "pipeline", "sustained", "catchup")  # the order they run in


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases and a 100k backlog (smoke run)")
    parser.add_argument("--processes", default=os.environ.get("BENCH_PROCESSES", "1,2"))
    parser.add_argument("--duration", type=float, default=None, help="seconds per ghz level")
    parser.add_argument("--backlog", type=int, default=None)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}")
    parser.add_argument(
        "--sustained-seconds", type=float, default=None, help="length of each sustained attempt (60 s; 15 with --quick)"
    )
    parser.add_argument("--sustained-attempts", type=int, default=5, help="most rates the sustained search tries")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the services, e.g. BENCH_SWITCHINTERVAL=0.0005 (repeatable)",
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the floor servers (benchmarks/floor_adder.py) at P=1"
    )
    parser.add_argument(
        "--compare-crc", action="store_true", help="catch-up also with kafka-python's pure-Python CRC (before/after)"
    )
    args = parser.parse_args(argv)
    for item in args.service_env:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--service-env {item!r}: expected KEY=VALUE")
        EXTRA_ENV[key] = value
    duration = args.duration or (4 if args.quick else 10)
    backlog = args.backlog or (100_000 if args.quick else 1_000_000)
    sustained_s = args.sustained_seconds or (15 if args.quick else 60)
    phases = set(args.phases.split(","))
    if phases - set(PHASES):
        parser.error(f"--phases: unknown {sorted(phases - set(PHASES))}; known: {', '.join(PHASES)}")
    ghz_binary()
    wrk_binary()
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "loadavg_at_start": os.getloadavg(),
        "config": {
            "duration_s": duration,
            "backlog": backlog,
            "partitions": args.partitions,
            "quick": args.quick,
            "sustained_s": sustained_s,
            "sustained_attempts": args.sustained_attempts,
            "service_env": EXTRA_ENV,
        },
        "targets": TARGETS,
    }
    with tempfile.TemporaryDirectory(prefix="sumflow-bench-") as tmp:
        run_dir = Path(tmp)
        broker = KafkaBroker(run_dir / "kafka")
        log(f"starting the broker (run dir {run_dir})")
        broker.start()
        try:
            if "throughput" in phases:
                results["throughput"] = {}
                for p in args.processes.split(","):
                    guarded(
                        results,
                        f"throughput P={p}",
                        lambda p=p: results["throughput"].__setitem__(
                            p, phase_throughput(broker, run_dir, int(p), duration, args.partitions, not args.no_floor)
                        ),
                    )
            if "pinned" in phases:
                guarded(
                    results,
                    "pinned",
                    lambda: results.__setitem__("pinned", phase_pinned(broker, run_dir, duration, args.partitions)),
                )
            procs = int(args.processes.split(",")[-1])
            peak = capacity(results.get("throughput", {}).get(str(procs)))
            if "pipeline" in phases:
                rate = round(TARGETS["fixed_rate_share"] * peak) if peak else DEFAULT_FIXED_RATE
                guarded(
                    results,
                    "pipeline",
                    lambda: results.__setitem__(
                        "pipeline",
                        {
                            **phase_pipeline(
                                broker,
                                run_dir,
                                procs,
                                15 if args.quick else 30,
                                5 if args.quick else 10,
                                args.partitions,
                                rate,
                            ),
                            "processes": procs,
                            "rate_from_capacity": peak is not None,
                        },
                    ),
                )
            if "sustained" in phases:
                start = round(SUSTAINED_START_SHARE * peak) if peak else DEFAULT_FIXED_RATE
                guarded(
                    results,
                    "sustained",
                    lambda: results.__setitem__(
                        "sustained",
                        {
                            **phase_sustained(
                                broker, run_dir, procs, args.partitions, start, sustained_s, args.sustained_attempts
                            ),
                            "closed_model_peak": peak,
                        },
                    ),
                )
            if "catchup" in phases:
                guarded(
                    results,
                    "catchup",
                    lambda: results.__setitem__(
                        "catchup", phase_catchup(broker, run_dir, backlog, args.partitions, args.compare_crc)
                    ),
                )
        finally:
            broker.stop()
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["loadavg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print()
    print(table(results))
    print(f"\nload average at start {results['loadavg_at_start']}, at end {results['loadavg_at_end']}")
    print(f"written {args.out}")
    for name, error in results.get("errors", {}).items():
        print(f"phase {name} failed: {error}")
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
