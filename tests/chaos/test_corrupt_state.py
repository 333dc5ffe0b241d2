"""A corrupt or truncated state at start (after a SIGKILL): the accumulator refuses to start with a
clear one-line error and leaves the file alone (never a silent reset to 0); the documented recovery,
`sumflow-accumulator rebuild`, rebuilds from the audit log and the topic, and the total is exact."""

from __future__ import annotations

import random
import subprocess

import pytest

from harness.processes import ACCUMULATOR_BIN

SIZES = {"short": (600, 300, 100), "long": (20_000, 5_000, 2_000)}  # before, while down, after rebuild


def corrupt(db, kind: str, rng: random.Random) -> None:
    data = db.read_bytes()
    if kind == "truncated":
        db.write_bytes(data[: max(1, len(data) // 2)])
    elif kind == "garbage":
        start = min(len(data) - 1, 4096) if len(data) > 100 else 0
        db.write_bytes(data[:start] + rng.randbytes(4096) + data[start + 4096 :])
    else:  # "empty"
        db.write_bytes(b"")


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty"])
def test_corrupt_state_is_refused_and_rebuild_is_exact(size, kind, kafka_broker, deploy):
    before, down, after = SIZES[size]
    rng = random.Random(kind)
    d = deploy(kafka_broker)
    run = d.start_run(before + down + after, seed=len(kind) * 7)
    requests = run.requests
    run.send(requests[:before])
    d.accumulator.wait_applied(before)
    d.accumulator.kill()  # no clean shutdown: WAL and all

    db = d.state_dir / "state.db"
    for leftover in (d.state_dir / "state.db-wal", d.state_dir / "state.db-shm"):
        leftover.unlink(missing_ok=True)  # the WAL lost too: only the damaged main file remains
    corrupt(db, kind, rng)
    damaged = db.read_bytes()
    refused = subprocess.run([str(ACCUMULATOR_BIN)], env=d.accumulator.env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1, (refused.returncode, refused.stderr[-2000:])
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert str(db) in refused.stderr and "sumflow-accumulator rebuild" in refused.stderr
    assert db.read_bytes() == damaged, "the refused state must be left untouched"

    run.send(requests[before : before + down])  # while it is down
    rebuilt = subprocess.run(
        [str(ACCUMULATOR_BIN), "rebuild"], env=d.accumulator.env, capture_output=True, text=True, timeout=600
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    expected = sum(r.result for r in requests[: before + down])
    assert f"total={expected} applied={before + down}" in rebuilt.stdout, rebuilt.stdout

    d.accumulator.start()
    run.send(requests[before + down :])
    run.finish(f"corrupt state ({kind}) + rebuild", faults=1).assert_exact()
