"""How an adder process knows it is one of a supervisor's workers (SUMFLOW_ADDER_PROCESSES > 1).

The supervisor (adder_supervisor.py) sets `WORKER_ENV=1` in its workers' environment; adder_main.py
reads it. Not a user setting, so not in config.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

WORKER_ENV = "SUMFLOW_ADDER_WORKER"


def is_worker(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(WORKER_ENV) == "1"
