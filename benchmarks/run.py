"""sumflow benchmarks on this machine: `make bench` (or `python -m benchmarks.run [--quick]`).

Starts a real single-node KRaft broker on loopback, the real services as subprocesses, a bare gRPC
adding server and a bare kafka-python consumer as baselines, and drives them with ghz and wrk.
Prints a table and writes benchmarks/results/latest.json. Every phase is bounded in time.
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

from benchmarks.procstats import RssSampler, max_process_rss_mib
from harness.env import accumulator_env, adder_env, process_env
from harness.kafka import KafkaBroker, libs_dir
from harness.ports import free_port
from harness.processes import AccumulatorProcess, AdderProcess, CommandProcess, ServiceError, ServiceProcess
from load.backlog import produce_backlog, produce_backlog_java
from load.freshness import FreshnessProbe
from load.generators import LoadResult, ghz_binary, run_ghz, run_wrk, wrk_binary
from sumflow.v1 import sum_pb2, sum_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CONCURRENCY = (16, 64, 256)
TARGETS = {
    "adder_rps_min": 3000,
    "adder_vs_bare_min": 0.6,
    "fixed_rate_p99_ms_max": 20,
    "freshness_p99_ms_max": 100,
    "catchup_eps_min": 50_000,
    "catchup_vs_bare_min": 0.5,
    "rss_mib_max": 80,
    "ready_s_max": 1.5,
}


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


def bench_adder(broker: KafkaBroker, topic: str, run_dir: Path, dedupe: Path, processes: int) -> AdderProcess:
    """The real adder with its own notify socket: `ready_s` is spawn -> READY=1."""
    settings = adder_env(
        broker.bootstrap,
        topic,
        dedupe,
        grpc_port=free_port(),
        metrics_port=free_port(),
        defaults=service_defaults(),
        SUMFLOW_ADDER_PROCESSES=str(processes),
        **EXTRA_ENV,
    )
    return AdderProcess(process_env(settings), run_dir, notify=True)


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
def bare_server(processes: int, run_dir: Path) -> Iterator[str]:
    target = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "benchmarks.bare_adder", "--listen", target, "--processes", str(processes)]
    server = CommandProcess(f"bare-{processes}", argv, run_dir, ready=lambda: grpc_answers(target), cwd=REPO)
    with server.running(timeout=30):
        yield target


# The floor servers (benchmarks/floor_adder.py): the least work the mandated libraries allow per call.
FLOORS = {
    "diskcache only": ["--no-kafka"],
    "kafka-python only": ["--no-dedupe"],
    "diskcache + kafka-python": [],
}


@contextlib.contextmanager
def floor_server(broker: KafkaBroker, run_dir: Path, label: str, flags: list[str]) -> Iterator[str]:
    target = f"127.0.0.1:{free_port()}"
    topic = new_topic(broker, "floor", 1)
    state = run_dir / f"floor-{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "-m", "benchmarks.floor_adder", "--listen", target, "--bootstrap", broker.bootstrap]
    argv += ["--topic", topic, "--dir", str(state), *flags]
    name = "floor-" + label.replace(" ", "").replace("+", "-")
    server = CommandProcess(name, argv, run_dir, ready=lambda: grpc_answers(target), cwd=REPO)
    with server.running(timeout=30):
        yield target


def ladder(target: str, duration: float, processes: int, pid: int | None = None) -> dict[str, Any]:
    """ghz at each concurrency level (closed model, fresh UUID per call)."""
    run_ghz(target, concurrency=16, duration_s=2, connections=16)  # warm-up
    out: dict[str, Any] = {}
    for c in CONCURRENCY:
        sampler = RssSampler(pid) if pid else contextlib.nullcontext()
        with sampler:
            res = run_ghz(target, concurrency=c, duration_s=duration, connections=min(c, 16))
        row = res.as_dict()
        if pid:
            row["rss_peak_mib"] = round(sampler.peak, 1)
        out[str(c)] = row
        log(f"  P={processes} c={c}: {res.rps:.0f}/s p50={res.p50_ms:.1f}ms p99={res.p99_ms:.1f}ms err={res.errors}")
    return out


def phase_throughput(
    broker: KafkaBroker, run_dir: Path, processes: int, duration: float, partitions: int, floor: bool = True
) -> dict[str, Any]:
    log(f"bare gRPC adding server, {processes} process(es)")
    with bare_server(processes, run_dir) as target:
        bare = ladder(target, duration, processes)
    floors: dict[str, dict[str, Any]] = {}
    if processes == 1 and floor:
        for label, flags in FLOORS.items():
            log(f"floor server, 1 process: {label}")
            with floor_server(broker, run_dir, label, flags) as target:
                floors[label] = ladder(target, duration, processes)
    log(f"sumflow-adder, {processes} process(es), persistent dedupe + acks=all")
    topic = new_topic(broker, "adder", partitions)
    adder = bench_adder(broker, topic, run_dir, run_dir / f"dedupe-{processes}", processes)
    try:
        ready_s = start_timed(adder)
        wait_grpc(adder.target)
        time.sleep(1)
        idle = max_process_rss_mib(adder.pid)
        real = ladder(adder.target, duration, processes, adder.pid)
    finally:
        stop_timed(adder)
    ratio = {c: real[c]["rps"] / bare[c]["rps"] if bare[c]["rps"] else 0.0 for c in real}
    return {
        "bare": bare,
        "adder": real,
        "ratio_vs_bare": ratio,
        "floor": floors,
        "adder_ready_s": round(ready_s, 3),
        "adder_rss_idle_mib": round(idle, 1),
        "adder_stop_s": adder.stop_s,
        "adder_stop_killed": adder.stop_killed,
    }


LOW_RATE = 400  # calls/s for the second fixed-rate run (below the adder's capacity here)


def fixed_rate(target: str, http_port: int, rate: int, duration: float, adder_pid: int, acc_pid: int) -> dict[str, Any]:
    """ghz at a fixed rate (open model) with the freshness probe beside it."""
    log(f"fixed {rate} calls/s for {duration}s with the freshness probe")
    probe = FreshnessProbe(target, http_port, budget_s=duration)
    result: dict[str, LoadResult] = {}
    load = threading.Thread(
        target=lambda: result.setdefault(
            "ghz", run_ghz(target, concurrency=128, duration_s=duration, connections=16, rps=rate)
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


def phase_pipeline(
    broker: KafkaBroker, run_dir: Path, processes: int, duration: float, rest_duration: int, partitions: int
) -> dict[str, Any]:
    """Fixed 1,000 (then LOW_RATE) calls/s with a freshness probe, then REST GET /api/total with wrk."""
    topic = new_topic(broker, "pipeline", partitions)
    adder = bench_adder(broker, topic, run_dir, run_dir / "dedupe-pipeline", processes)
    acc = bench_accumulator(broker, topic, run_dir, run_dir / "acc")
    http_port = acc.http_port
    out: dict[str, Any] = {}
    try:
        out["adder_ready_s"] = round(start_timed(adder), 3)
        out["accumulator_ready_s"] = round(start_timed(acc), 3)
        time.sleep(1)
        out["accumulator_rss_idle_mib"] = round(max_process_rss_mib(acc.pid), 1)
        target = adder.target
        wait_grpc(target)
        out["fixed_rate"] = fixed_rate(target, http_port, 1000, duration, adder.pid, acc.pid)
        # The same below the adder's capacity on this machine: latency without queueing.
        out["fixed_rate_low"] = fixed_rate(target, http_port, LOW_RATE, duration, adder.pid, acc.pid)
        rest: dict[str, Any] = {}
        for conns in (16, 64):
            with RssSampler(acc.pid) as rss:
                res = run_wrk(f"http://127.0.0.1:{http_port}/api/total", connections=conns, duration_s=rest_duration)
            rest[str(conns)] = {**res.as_dict(), "rss_peak_mib": round(rss.peak, 1)}
            log(f"  GET /api/total c={conns}: {res.rps:.0f} req/s p99={res.p99_ms:.1f}ms errors={res.errors}")
        out["rest_total"] = rest
        out["final_total"] = acc.total()
    finally:
        stop_timed(acc)
        stop_timed(adder)
    out["stop_s"] = {"adder": adder.stop_s, "accumulator": acc.stop_s}
    out["stop_killed"] = {"adder": adder.stop_killed, "accumulator": acc.stop_killed}
    return out


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
        "total_ok": total == {"total": 3 * backlog, "applied": backlog},
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


def lat(r: dict[str, Any]) -> str:
    return f"{fmt(r['rps'])}/s p50 {fmt(r['p50_ms'], 'ms', 1)} p99 {fmt(r['p99_ms'], 'ms', 1)} err {r['errors']}"


def fmt(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    t = TARGETS
    for procs, tp in results.get("throughput", {}).items():
        for c in map(str, CONCURRENCY):
            a, b = tp["adder"][c], tp["bare"][c]
            rows.append(
                (
                    f"adder P={procs} c={c}",
                    lat(a),
                    f"bare {fmt(b['rps'])}/s ratio {tp['ratio_vs_bare'][c]:.2f}",
                    verdict(a["rps"] >= t["adder_rps_min"] and tp["ratio_vs_bare"][c] >= t["adder_vs_bare_min"]),
                )
            )
        for label, levels in tp.get("floor", {}).items():
            for c in map(str, CONCURRENCY):
                f, b = levels[c], tp["bare"][c]
                rows.append(
                    (
                        f"floor P=1 c={c}: {label}",
                        lat(f),
                        f"ratio vs bare {f['rps'] / b['rps'] if b['rps'] else 0:.2f}, "
                        f"adder/floor {tp['adder'][c]['rps'] / f['rps'] if f['rps'] else 0:.2f}",
                        "(bound)",
                    )
                )
        rows.append(
            (
                f"adder P={procs} ready / RSS",
                f"ready {tp['adder_ready_s']}s, idle {tp['adder_rss_idle_mib']} MiB",
                "peak " + ", ".join(f"{tp['adder'][c].get('rss_peak_mib')}" for c in map(str, CONCURRENCY)) + " MiB",
                verdict(
                    tp["adder_ready_s"] <= t["ready_s_max"]
                    and max(tp["adder"][c].get("rss_peak_mib", 0) for c in map(str, CONCURRENCY)) <= t["rss_mib_max"]
                ),
            )
        )
    pipe = results.get("pipeline")
    if pipe:
        fr = pipe["fixed_rate"]
        rows.append(
            (
                "fixed 1000 calls/s",
                lat(fr),
                f"target p99 <= {t['fixed_rate_p99_ms_max']}ms",
                verdict(fr["p99_ms"] <= t["fixed_rate_p99_ms_max"]),
            )
        )
        rows.append(
            (
                "freshness at 1000/s",
                f"p50 {fmt(fr['freshness_p50_ms'], 'ms', 1)} p99 {fmt(fr['freshness_p99_ms'], 'ms', 1)}",
                f"n={fr['freshness_samples']} timeouts={fr['freshness_timeouts']}",
                verdict(fr["freshness_p99_ms"] is not None and fr["freshness_p99_ms"] <= t["freshness_p99_ms_max"]),
            )
        )
        low = pipe.get("fixed_rate_low")
        if low:
            rows.append(
                (
                    f"fixed {low['rate']} calls/s",
                    lat(low),
                    f"freshness p50 {fmt(low['freshness_p50_ms'], 'ms', 1)} p99 {fmt(low['freshness_p99_ms'], 'ms', 1)}"
                    f" (n={low['freshness_samples']})",
                    "(below capacity)",
                )
            )
        for conns, r in pipe["rest_total"].items():
            rows.append(
                (
                    f"GET /api/total c={conns}",
                    f"{fmt(r['rps'])}/s p50 {fmt(r['p50_ms'], 'ms', 1)} p99 {fmt(r['p99_ms'], 'ms', 1)}",
                    f"errors {r['errors']}, RSS peak {r['rss_peak_mib']} MiB",
                    verdict(r["errors"] == 0 and r["rss_peak_mib"] <= t["rss_mib_max"]),
                )
            )
        rows.append(
            (
                "pipeline RSS / ready",
                f"adder peak {fr['adder_rss_peak_mib']} MiB, accumulator idle {pipe['accumulator_rss_idle_mib']} "
                f"peak {fr['accumulator_rss_peak_mib']} MiB",
                f"ready adder {pipe['adder_ready_s']}s accumulator {pipe['accumulator_ready_s']}s",
                verdict(
                    max(fr["adder_rss_peak_mib"], fr["accumulator_rss_peak_mib"]) <= t["rss_mib_max"]
                    and max(pipe["adder_ready_s"], pipe["accumulator_ready_s"]) <= t["ready_s_max"]
                ),
            )
        )
    cu = results.get("catchup")
    if cu:
        rows.append(
            (
                f"catch-up {cu['backlog']:,} events",
                f"{fmt(cu['accumulator_eps'])} events/s ({cu['accumulator_s_from_ready']}s), "
                f"RSS {cu['accumulator_rss_peak_mib']} MiB",
                f"bare consumer {fmt(cu['bare_consumer_eps'])}/s ratio {cu['ratio_vs_bare']:.2f}",
                verdict(
                    cu["accumulator_eps"] >= t["catchup_eps_min"]
                    and cu["ratio_vs_bare"] >= t["catchup_vs_bare_min"]
                    and cu["accumulator_rss_peak_mib"] <= t["rss_mib_max"]
                    and cu["total_ok"]
                    and cu.get("complete", True)
                ),
            )
        )
    before = cu.get("pure_python_crc") if cu else None
    if before:
        rows.append(
            (
                "catch-up, pure-Python CRC",
                f"{fmt(before['accumulator_eps'])} events/s ({before['accumulator_s_from_ready']}s)",
                f"bare consumer {fmt(before['bare_consumer_eps'])}/s ratio {before['ratio_vs_bare']:.2f}",
                "(before)",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)] if rows else [0] * 4
    lines = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    return "\n".join(lines)


def guarded(results: dict[str, Any], name: str, phase: Any) -> None:
    """Run one phase; a failure is recorded in the results and the other phases still run."""
    try:
        phase()
    except Exception as exc:
        log(f"phase {name} FAILED: {exc!r}")
        results.setdefault("errors", {})[name] = repr(exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases and a 100k backlog (smoke run)")
    parser.add_argument("--processes", default=os.environ.get("BENCH_PROCESSES", "1,2"))
    parser.add_argument("--duration", type=float, default=None, help="seconds per ghz level")
    parser.add_argument("--backlog", type=int, default=None)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--phases", default="throughput,pipeline,catchup")
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
    phases = set(args.phases.split(","))
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
            if "pipeline" in phases:
                procs = int(args.processes.split(",")[-1])
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
                            ),
                            "processes": procs,
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
