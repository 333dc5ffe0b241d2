"""Disk full for the state directory (a small tmpfs mounted by the test): the accumulator stops
consuming and /readyz says not ready, loses nothing, and continues when space returns: exact total."""

from __future__ import annotations

import errno
import json
import subprocess
import time
from pathlib import Path

from tests.support.chaos import FaultStream, audit_counts, judge, plan_requests, report

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
        d = deploy(kafka_broker.bootstrap, lambda n, p: kafka_broker.create_topic(n, partitions=p), state_dir=mount)
        d.adder.start()
        d.accumulator.start()
        d.accumulator.wait_ready()
        requests = plan_requests(before + during, seed=41)
        started = time.monotonic()
        outcome = FaultStream(d.adder.target, requests[:before]).run(timeout=300)
        d.accumulator.wait_applied(before)
        filler = fill(mount)

        more = FaultStream(d.adder.target, requests[before:]).run(timeout=300)  # the adder is unaffected
        outcome.acknowledged.update(more.acknowledged)
        outcome.sent += more.sent
        outcome.unexpected += more.unexpected
        give_up = time.monotonic() + 60
        while d.accumulator.ready() and time.monotonic() < give_up:
            time.sleep(0.1)
        status, body = d.accumulator.get("/readyz")
        assert status == 503, (status, body)
        stalled = d.accumulator.total()
        assert stalled["applied"] < before + during, "it cannot have committed on a full disk"
        time.sleep(2)
        assert d.accumulator.total() == stalled, "no progress while the disk is full"
        assert d.accumulator.alive()

        filler.unlink()  # space returns
        d.accumulator.wait_ready(timeout=60)
        final = d.accumulator.wait_applied(before + during)
        assert d.accumulator.terminate() == 0
        assert not outcome.unexpected, outcome.unexpected[:5]
        verdict = judge(requests, outcome, final, audit_counts(mount))
        assert json.loads((mount / "total.json").read_bytes())["total"] == verdict.total
        report(
            "state disk full, then space returns",
            faults=1,
            sent=outcome.sent,
            acknowledged=len(outcome.acknowledged),
            verdict=verdict,
            wall=time.monotonic() - started,
        )
        verdict.assert_exact()
    finally:
        if d is not None:
            d.accumulator.kill()
        subprocess.run(["umount", str(mount)], check=False)
        if mount.is_mount():
            subprocess.run(["umount", "-l", str(mount)], check=False)
