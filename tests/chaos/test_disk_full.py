"""Disk full for the state directory (a small tmpfs mounted by the test): the accumulator stops
consuming and /readyz says not ready, loses nothing, and continues when space returns: exact total.

It is also the stalled consumer: records pending and no progress for SUMFLOW_STALL_SECONDS make
/healthz fail (what stops the systemd watchdog keep-alives) naming the cause, /readyz names it too,
and both recover with the disk."""

from __future__ import annotations

import errno
import json
import subprocess
import time
from pathlib import Path

STALL_SECONDS = 3
SIZES = {"short": (300, 700, "16m"), "long": (3_000, 10_000, "48m")}  # before, while full, tmpfs size


def fill(directory: Path) -> Path:
    """Write a filler file until the file system is full (down to single bytes)."""
    filler = directory / "filler"
    chunk = 1 << 20
    with open(filler, "wb", buffering=0) as handle:
        while chunk:
            try:
                handle.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    return filler


def test_disk_full_stops_consuming_then_resumes_exactly(size, tmp_path: Path, kafka_broker, deploy):
    before, during, tmpfs_size = SIZES[size]
    mount = tmp_path / "state"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={tmpfs_size}", "tmpfs", str(mount)], check=True)
    d = None
    try:
        d = deploy(kafka_broker, state_dir=mount, acc_extra={"SUMFLOW_STALL_SECONDS": str(STALL_SECONDS)})
        run = d.start_run(before + during, seed=41)
        run.send(run.requests[:before])
        d.accumulator.wait_applied(before)
        filler = fill(mount)

        run.send(run.requests[before:])  # the adder is unaffected
        give_up = time.monotonic() + 60
        while d.accumulator.ready() and time.monotonic() < give_up:
            time.sleep(0.1)
        status, body = d.accumulator.get("/readyz")
        assert status == 503, (status, body)
        assert json.loads(body)["reason"].startswith("state commit failing"), body
        give_up = time.monotonic() + 60
        while d.accumulator.get("/healthz")[0] == 200 and time.monotonic() < give_up:
            time.sleep(0.2)
        status, body = d.accumulator.get("/healthz")
        assert status == 503 and "no progress" in json.loads(body)["reason"], (status, body)
        stalled = d.accumulator.total()
        assert stalled["applied"] < before + during, "it cannot have committed on a full disk"
        time.sleep(2)
        assert d.accumulator.total() == stalled, "no progress while the disk is full"
        assert d.accumulator.is_alive()

        filler.unlink()  # space returns
        d.accumulator.wait_ready(timeout=60)
        assert d.accumulator.get("/healthz")[0] == 200
        verdict = run.finish("state disk full, then space returns", faults=1)
        assert json.loads((mount / "total.json").read_bytes())["total"] == verdict.total
        verdict.assert_exact()
    finally:
        if d is not None:
            d.accumulator.kill()
        subprocess.run(["umount", str(mount)], check=False)
        if mount.is_mount():
            subprocess.run(["umount", "-l", str(mount)], check=False)
