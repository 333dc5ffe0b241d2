"""Every console script answers --help and --version and exits, touching nothing.

The environment points every state directory into an empty temporary directory and Kafka at a closed
port: a command that started its service would create a directory there, or never exit (the
subprocess bound below is only a safety net against a hang, not a timing assertion).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import sumflow
from harness.ports import free_port

BIN = Path(sys.executable).parent
COMMANDS = ["sumflow", "sumflow-adder", "sumflow-accumulator"]
SUBCOMMANDS = [
    ["sumflow", "add"],
    ["sumflow", "total"],
    ["sumflow", "summations"],
    ["sumflow", "status"],
    ["sumflow", "rebuild"],
    ["sumflow-accumulator", "rebuild"],
]


def run(tmp_path: Path, argv: list[str]) -> subprocess.CompletedProcess:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "STATE_DIRECTORY": str(sandbox / "state"),
        "SUMFLOW_DEDUPE_DIR": str(sandbox / "dedupe"),
        "SUMFLOW_STATE_DIR": str(sandbox / "accumulator"),
        "SUMFLOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "SUMFLOW_GRPC_LISTEN": "127.0.0.1:0",
        "SUMFLOW_METRICS_LISTEN": "127.0.0.1:0",
        "SUMFLOW_HTTP_LISTEN": "127.0.0.1:0",
    }
    done = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        env=env,
        cwd=sandbox,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert list(sandbox.iterdir()) == [], f"{argv} created {list(sandbox.iterdir())}"
    return done


@pytest.mark.parametrize("command", COMMANDS)
def test_version_prints_the_package_version(tmp_path: Path, command: str) -> None:
    done = run(tmp_path, [command, "--version"])
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{command} {sumflow.__version__}\n", "")


@pytest.mark.parametrize("argv", [[c] for c in COMMANDS] + SUBCOMMANDS, ids=" ".join)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_usage_and_exits_0(tmp_path: Path, argv: list[str], flag: str) -> None:
    done = run(tmp_path, [*argv, flag])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {' '.join(argv)} ")
    assert done.stderr == ""


@pytest.mark.parametrize("command", ["sumflow-adder", "sumflow-accumulator"])
def test_service_help_lists_its_environment(tmp_path: Path, command: str) -> None:
    out = run(tmp_path, [command, "--help"]).stdout
    assert "SUMFLOW_KAFKA_BOOTSTRAP" in out
    assert ("SUMFLOW_DEDUPE_DIR" in out) == (command == "sumflow-adder")
    assert ("SUMFLOW_STATE_DIR" in out) == (command == "sumflow-accumulator")


@pytest.mark.parametrize("command", ["sumflow-adder", "sumflow-accumulator", "sumflow"])
def test_unknown_arguments_exit_2_without_starting(tmp_path: Path, command: str) -> None:
    done = run(tmp_path, [command, "--no-such-option"])
    assert done.returncode == 2
    assert done.stderr.startswith(f"usage: {command} ")
