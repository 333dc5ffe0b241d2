"""Why the bare grpc.aio server measures what it does here: one factor changed at a time.

    python -m benchmarks.bare_factors [--other-python PATH] [--seconds 10] [--rounds 2]

The bare adding server (benchmarks/bare_aio_adder.py) under ghz at 64 calls in flight over 16
connections, a fresh UUID per call, as `make bench` drives it. Each variant changes one thing against
`as bench` (this venv's interpreter, the adder's concurrency limit, nothing pinned):

- `other interpreter`: the same server run by --other-python (a venv built from the same locks with
  another interpreter, e.g. Debian's optimised /usr/bin/python3.11: `PATH=/usr/bin:$PATH make venv
  VENV=/work/venv-deb`);
- `no limit`: grpc.aio without `maximum_concurrent_rpcs`;
- `pinned`: the server on CPU 0, ghz on CPU 1 (no sharing of a core between them).

Variants alternate within each round (the machine is noisy: compare within a round). Prints one
line per measurement: calls/s, p99, the server's CPU per call and ghz's own CPU per call.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.run import CONNECTIONS, bare_server, level, log
from load.generators import run_ghz

CONCURRENCY = 64


@dataclass(frozen=True)
class Variant:
    name: str
    python: str = sys.executable
    workers: str | None = None  # None: as make bench (SUMFLOW_GRPC_WORKERS, 64); "0": no concurrency limit
    server_cpus: str | None = None  # taskset -c list; None: not pinned
    ghz_cpus: set[int] = field(default_factory=set)  # empty: not pinned


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def _affinity(cpus: set[int]) -> Iterator[None]:
    """This process (and so ghz, its child) on `cpus` for the block; unchanged when empty."""
    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def measure(variant: Variant, seconds: float, run_dir: Path) -> dict[str, object]:
    """One `make bench` level (benchmarks.run.level) of the bare server, plus ghz's own CPU per call."""
    server = bare_server(1, run_dir, python=variant.python, workers=variant.workers, cpu_list=variant.server_cpus)
    with server as (target, pid), _affinity(variant.ghz_cpus):
        run_ghz(target, concurrency=16, duration_s=2, connections=CONNECTIONS)  # warm-up
        ghz_before = _children_cpu_seconds()
        row = level(target, CONCURRENCY, seconds, pid)
        ghz_cpu = _children_cpu_seconds() - ghz_before
    return {
        "variant": variant.name,
        "calls_s": round(row["rps"]),
        "p99_ms": round(row["p99_ms"], 1),
        "errors": row["errors"],
        "server_cpu_us_per_call": row["cpu_us_per_call"],
        "ghz_cpu_us_per_call": round(ghz_cpu / row["ok"] * 1e6, 1) if row["ok"] else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other-python", help="the interpreter of a second venv with the same locks")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    variants = [Variant("as bench"), Variant("no limit", workers="0"), Variant("pinned", server_cpus="0", ghz_cpus={1})]
    if args.other_python:
        variants.insert(1, Variant("other interpreter", python=args.other_python))
    log(f"interpreter: {sys.version.split()[0]} ({sys.executable}); other: {args.other_python or '-'}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bare-factors-") as tmp:
        for round_no in range(1, args.rounds + 1):
            for variant in variants:
                row = {"round": round_no, **measure(variant, args.seconds, Path(tmp))}
                rows.append(row)
                log(
                    f"round {round_no} {variant.name:18} {row['calls_s']:>6,} calls/s  p99 {row['p99_ms']:6.1f} ms"
                    f"  server {row['server_cpu_us_per_call']} us/call  ghz {row['ghz_cpu_us_per_call']} us/call"
                    f"  errors {row['errors']}"
                )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
