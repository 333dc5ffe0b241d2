"""On PYTHONPATH, sets the interpreter's GIL switch interval from BENCH_SWITCHINTERVAL (seconds) in
every Python process started with it: the services under test, to measure the effect before changing
their code (see benchmarks/results/history-until-2026-12-07.md, the GIL convoy of the de-dupe writer lock)."""

import os
import sys

_value = os.environ.get("BENCH_SWITCHINTERVAL")
if _value:
    sys.setswitchinterval(float(_value))
