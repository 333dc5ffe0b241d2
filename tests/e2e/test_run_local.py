"""`scripts/run-local.sh` (what `make run` runs) as a user meets it: up, the Quick start's commands,
then Ctrl-C, i.e. SIGINT to the whole foreground process group, as a terminal sends it.

Ctrl-C must stop the services first and the broker last, exit 0, and leave no error in the logs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SUMFLOW = str(Path(sys.executable).parent / "sumflow")


def _as_a_terminal_job() -> None:
    """Its own process group, with SIGINT handled by default as in an interactive shell's job (a
    caller that ignores SIGINT, e.g. one started in the background, would pass the ignore on)."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _lines(stream: object, sink: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sink.put(line)
    sink.put(None)


def _wait_for(sink: queue.Queue[str | None], seen: list[str], text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = sink.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError("run-local exited before: " + "".join(seen))
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"no {text!r} after {timeout}s: " + "".join(seen))


def _epoch(ts: str) -> float:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_stops_services_then_broker_and_exits_0_with_clean_logs(tmp_path: Path) -> None:
    ports = {
        name: free_port()
        for name in ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "ADDER_PORT", "ADDER_METRICS_PORT", "ACCUMULATOR_PORT")
    }
    env = {**os.environ, "SUMFLOW_RUN_DIR": str(tmp_path / "var"), **{k: str(v) for k, v in ports.items()}}
    client_env = {
        **os.environ,
        "SUMFLOW_ADDER_TARGET": f"127.0.0.1:{ports['ADDER_PORT']}",
        "SUMFLOW_ADDER_METRICS_URL": f"http://127.0.0.1:{ports['ADDER_METRICS_PORT']}",
        "SUMFLOW_ACCUMULATOR_URL": f"http://127.0.0.1:{ports['ACCUMULATOR_PORT']}",
    }
    run = subprocess.Popen(
        ["scripts/run-local.sh"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_as_a_terminal_job,
    )
    sink: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines, args=(run.stdout, sink), daemon=True).start()
    seen: list[str] = []
    try:
        _wait_for(sink, seen, "sumflow is up", timeout=300)
        _wait_for(sink, seen, "sumflow status", timeout=10)
        assert f"export SUMFLOW_ADDER_TARGET=127.0.0.1:{ports['ADDER_PORT']} " in "".join(seen)

        added = subprocess.run([SUMFLOW, "add", "40", "2"], env=client_env, capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        assert " = 42  request_id " in added.stdout
        for _ in range(150):
            total = subprocess.run([SUMFLOW, "total"], env=client_env, capture_output=True, text=True, timeout=60)
            if total.stdout == "total 42  (1 summation applied)\n":
                break
            time.sleep(0.2)
        assert total.stdout == "total 42  (1 summation applied)\n", total.stderr
        status = subprocess.run([SUMFLOW, "status"], env=client_env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr

        interrupted_at = time.time()
        os.killpg(run.pid, signal.SIGINT)  # the terminal's Ctrl-C
        code = run.wait(timeout=240)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    while (line := sink.get(timeout=10)) is not None:
        seen.append(line)
    output = "".join(seen)
    assert code == 0, output
    assert "stopped; state kept in" in output
    assert "a process exited" not in output and "ERROR" not in output
    assert not any(_port_open(port) for port in ports.values()), "something still listens after Ctrl-C"

    logs = tmp_path / "var" / "logs"
    for name in ("adder.log", "accumulator.log"):
        docs = [json.loads(line) for line in (logs / name).read_text().splitlines()]
        errors = [d for d in docs if d["level"] in ("error", "critical")]
        assert errors == [], f"{name}: {errors}"
        # A fresh broker may briefly answer NotCoordinator at start; stopping must not warn at all.
        late = [d for d in docs if d["level"] == "warning" and _epoch(d["ts"]) >= interrupted_at]
        assert late == [], f"{name}: warnings while stopping: {late}"
        assert any(d["msg"] == "accumulator ready" for d in docs) == (name == "accumulator.log")
