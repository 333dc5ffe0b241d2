"""The `sumflow` console script as a user runs it, against both services on the real broker.

Each call is the venv's `sumflow` executable in a subprocess; the assertions are on its exit status,
stdout and stderr, and on what the services then hold.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import sumflow
from harness.kafka import KafkaBroker
from harness.ports import free_port
from harness.stack import SumflowStack, sumflow_stack

SUMFLOW = str(Path(sys.executable).parent / "sumflow")
INT64_MAX = 2**63 - 1


def endpoints(stack: SumflowStack) -> list[str]:
    return [
        "--adder",
        stack.adder.target,
        "--adder-metrics",
        f"http://127.0.0.1:{stack.adder.metrics_port}",
        "--accumulator",
        stack.accumulator.base_url,
    ]


def sumflow_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SUMFLOW, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


@pytest.fixture(scope="module")
def stack(kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SumflowStack]:
    with sumflow_stack(kafka_broker.bootstrap, tmp_path_factory.mktemp("cli-stack")) as running:
        yield running


def add(stack: SumflowStack, *args: str) -> subprocess.CompletedProcess:
    return sumflow_cli("add", *args, *endpoints(stack))


def test_add_prints_the_result_then_a_repeat_is_a_duplicate_counted_once(stack: SumflowStack) -> None:
    before = stack.accumulator.total()
    rid = str(uuid.uuid4())
    first = add(stack, "40", "2", "--id", rid)
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"40 + 2 = 42  request_id {rid}  new\n"
    again = add(stack, "40", "2", "--id", rid, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"request_id": rid, "result": 42, "duplicate": True}
    after = stack.accumulator.wait_applied(before["applied"] + 1)
    assert after["total"] == before["total"] + 42

    total = sumflow_cli("total", *endpoints(stack))
    assert total.returncode == 0, total.stderr
    assert total.stdout.startswith(f"total {after['total']}  ({after['applied']} summation")


def test_add_without_id_uses_a_fresh_uuid_each_time(stack: SumflowStack) -> None:
    ids = [json.loads(add(stack, "1", "1", "--json").stdout)["request_id"] for _ in range(2)]
    assert ids[0] != ids[1]
    assert all(str(uuid.UUID(i)) == i for i in ids)


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["1", "2", "--id", "not-a-uuid"], 13, "sumflow add: invalid request: "),
        (["1", str(INT64_MAX)], 21, f"sumflow add: 1 + {INT64_MAX} does not fit in int64; nothing was added"),
    ],
)
def test_refused_calls_exit_with_10_plus_the_grpc_code(
    stack: SumflowStack, args: list[str], exit_code: int, message: str
) -> None:
    done = add(stack, *args)
    assert (done.returncode, done.stdout) == (exit_code, "")
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_same_id_other_numbers_is_already_exists(stack: SumflowStack) -> None:
    rid = str(uuid.uuid4())
    assert add(stack, "5", "5", "--id", rid).returncode == 0
    done = add(stack, "5", "6", "--id", rid)
    assert done.returncode == 16
    assert done.stderr == (
        f"sumflow add: request_id {rid} was already used with other numbers (5, 5); "
        "nothing was added: use a new --id (or none, for a fresh one)\n"
    )


def test_unreachable_adder_is_unavailable_and_says_how_to_retry() -> None:
    done = sumflow_cli("add", "1", "2", "--id", str(uuid.uuid4()), "--adder", f"127.0.0.1:{free_port()}")
    assert done.returncode == 24
    assert "unavailable" in done.stderr and "nothing was recorded: retry with --id" in done.stderr


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: the call can only time out."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_no_answer_within_the_timeout_is_deadline_exceeded() -> None:
    with silent_server() as port:
        done = sumflow_cli("add", "1", "2", "--adder", f"127.0.0.1:{port}", "--timeout", "1")
    assert done.returncode == 14
    assert "may or may not have been recorded" in done.stderr


def test_summations_lists_the_newest_first(stack: SumflowStack) -> None:
    rid = str(uuid.uuid4())
    assert add(stack, "7", "8", "--id", rid).returncode == 0
    stack.accumulator.wait_applied(stack.accumulator.total()["applied"])
    deadline_rows: list[dict] = []
    for _ in range(100):
        done = sumflow_cli("summations", "--limit", "1", "--json", *endpoints(stack))
        assert done.returncode == 0, done.stderr
        deadline_rows = json.loads(done.stdout)
        if deadline_rows and deadline_rows[0]["request_id"] == rid:
            break
        threading.Event().wait(0.2)
    assert deadline_rows[0]["request_id"] == rid and deadline_rows[0]["result"] == 15
    table = sumflow_cli("summations", "--limit", "1", *endpoints(stack))
    header, row = table.stdout.splitlines()
    assert header.split() == ["applied", "at", "request", "id", "first", "second", "result"]
    assert row.split()[1:] == [rid, "7", "8", "15"]
    bad = sumflow_cli("summations", "--limit", "0", *endpoints(stack))
    assert bad.returncode == 2 and "expected an integer from 1 to 1000" in bad.stderr


def test_status_reports_health_readiness_lag_and_versions(stack: SumflowStack) -> None:
    done = sumflow_cli("status", "--json", *endpoints(stack))
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["adder"]["ready"] and doc["adder"]["detail"] == "SERVING"
    assert doc["accumulator"]["healthy"] and doc["accumulator"]["ready"]
    assert doc["adder"]["version"] == doc["accumulator"]["version"] == sumflow.__version__
    assert set(doc["accumulator"]["consumer_lag"]) == {"0"}
    text = sumflow_cli("status", *endpoints(stack)).stdout.splitlines()
    assert text[0].split()[:4] == ["adder", stack.adder.target, "health", "SERVING"]
    assert "alive yes  ready yes  lag " in text[1] and f"version {sumflow.__version__}" in text[1]


def test_status_exits_1_when_a_service_is_down(stack: SumflowStack) -> None:
    args: Sequence[str] = [*endpoints(stack)]
    args = [*args[:-1], f"http://127.0.0.1:{free_port()}"]  # an accumulator that is not there
    done = sumflow_cli("status", *args)
    assert done.returncode == 1
    assert "alive no  ready no (unreachable)" in done.stdout
    doc = json.loads(sumflow_cli("status", "--json", *args).stdout)
    assert doc["accumulator"]["error"].startswith("cannot reach http://127.0.0.1:")


def test_rebuild_shows_progress_and_restores_the_same_total(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    with sumflow_stack(kafka_broker.bootstrap, tmp_path) as rebuilt:
        for i in range(30):
            rebuilt.adder.add(str(uuid.uuid4()), i, 1)
        expected = rebuilt.accumulator.wait_applied(30)
        rebuilt.accumulator.stop()
        env = {k: v for k, v in rebuilt.accumulator.env.items() if k.startswith("SUMFLOW_")}
        done = sumflow_cli("rebuild", env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"rebuilt {rebuilt.accumulator.state_dir}: total={expected['total']} ")
        progress = [line for line in done.stderr.splitlines() if line.startswith(("audit", "topic"))]
        assert progress[-2].startswith("audit [##############################] 30/30 records")
        assert progress[-1].startswith("topic [##############################] 30/30 records")
        assert progress[-1].endswith(" 0s left")
        rebuilt.accumulator.start()
        assert rebuilt.accumulator.total() == expected
