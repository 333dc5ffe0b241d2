"""On PYTHONPATH with BENCH_CPROFILE=<path prefix>: profiles every Python thread of every process
started with it (cProfile, one profiler per thread) and writes, at exit, `<prefix>.<pid>.pstats`
(all threads) and `<prefix>.<pid>.<thread name>.pstats` (each thread).

A development aid for the benchmarks, never used by the services themselves:

    .venv/bin/python -m benchmarks.run --phases throughput --processes 1 --no-floor \\
        --service-env PYTHONPATH=$PWD/benchmarks/cprofile --service-env BENCH_CPROFILE=/tmp/adder
    .venv/bin/python -m pstats /tmp/adder.<pid>.grpc-aio.pstats    # then: sort tottime, stats 30

The timer is each thread's own CPU clock (`time.thread_time_ns`), so a function's own time is the CPU
it used, not time spent blocked. cProfile slows the profiled code down (2-3x), so the calls/s of a
profiled run are not comparable; the split of CPU between functions and threads is what it is for.
"""

import atexit
import cProfile
import os
import pstats
import threading
import time

_prefix = os.environ.get("BENCH_CPROFILE")

if _prefix:
    _profiles: list[tuple[str, cProfile.Profile]] = []
    _lock = threading.Lock()

    def _profiled(name: str) -> cProfile.Profile:
        profile = cProfile.Profile(time.thread_time_ns, 1e-9)
        with _lock:
            _profiles.append((name, profile))
        profile.enable()
        return profile

    _bootstrap_inner = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def _bootstrap_profiled(self: threading.Thread) -> None:  # also threads whose class overrides run()
        profile = _profiled(self.name)
        try:
            _bootstrap_inner(self)
        finally:
            profile.disable()

    threading.Thread._bootstrap_inner = _bootstrap_profiled  # type: ignore[attr-defined]
    _main = _profiled("MainThread")

    @atexit.register
    def _dump() -> None:
        _main.disable()
        with _lock:
            profiles = list(_profiles)
        stats: pstats.Stats | None = None
        for name, profile in profiles:
            try:
                profile.create_stats()
            except Exception:  # a thread still running: its profiler cannot be stopped from here
                continue
            if not getattr(profile, "stats", None):
                continue
            pstats.Stats(profile).dump_stats(f"{_prefix}.{os.getpid()}.{name.replace('/', '_')}.pstats")
            stats = pstats.Stats(profile) if stats is None else stats.add(profile)
        if stats is not None:
            stats.dump_stats(f"{_prefix}.{os.getpid()}.pstats")
