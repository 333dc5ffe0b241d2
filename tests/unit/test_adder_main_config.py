"""`sumflow-adder` refuses a bad configuration with one line on stderr and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("SUMFLOW_DEDUPE_TTL_SECONDS", "soon", "SUMFLOW_DEDUPE_TTL_SECONDS"),
        ("SUMFLOW_GRPC_LISTEN", "nowhere", "SUMFLOW_GRPC_LISTEN"),
        ("SUMFLOW_ADDER_PROCESSES", "0", "SUMFLOW_ADDER_PROCESSES"),
        ("SUMFLOW_GRPC_WORKERS", "many", "SUMFLOW_GRPC_WORKERS"),
    ],
)
def test_config_error_is_one_line_and_exit_2(name: str, value: str, needle: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUMFLOW_")}
    env[name] = value
    proc = subprocess.run(
        [sys.executable, "-m", "sumflow.entrypoints.adder_main"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert needle in lines[0]
    assert proc.stdout == ""


def test_several_processes_need_a_fixed_port() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUMFLOW_")}
    env |= {"SUMFLOW_ADDER_PROCESSES": "2", "SUMFLOW_GRPC_LISTEN": "127.0.0.1:0"}
    proc = subprocess.run(
        [sys.executable, "-m", "sumflow.entrypoints.adder_main"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "SUMFLOW_ADDER_PROCESSES" in proc.stderr
