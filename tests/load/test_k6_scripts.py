"""Static and dry-run checks of the k6 scripts in load/ (k6 itself cannot be installed here).

Each script is executed under node with stand-in k6 modules against a simulated sumflow whose gRPC
methods and fields come from proto/sumflow/v1/sum.proto (compiled with protoc) and whose HTTP paths,
parameters and response bodies come from the accumulator's OpenAPI document. A script that names a
method, field, path or query parameter that does not exist, has a syntax error, or whose checks do
not hold against the contract fails here. Fault runs break one rule of the simulated system and show
the script's checks (and its final applied-count comparison) catch it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from urllib.parse import parse_qsl, urlsplit

import pytest

from sumflow.entrypoints.openapi import openapi_document
from tests.load.k6_harness import (
    K6_BUILTIN_METRICS,
    LOAD_DIR,
    PROTO_ROOT,
    REPO,
    openapi_model,
    proto_model,
    run_script,
    threshold_metric,
)

VAGRANT_APP_IP = "192.168.56.21"
REST_BASE = f"http://{VAGRANT_APP_IP}:8080"
MIX_ENV = {"REPEAT_RATIO": "0.3", "INVALID_RATIO": "0.1"}


@pytest.fixture(scope="module")
def rest_model():
    return openapi_model(openapi_document(), REST_BASE)


@pytest.fixture(scope="module")
def grpc_run(rest_model):
    return run_script("grpc.js", env=MIX_ENV, iterations=300, rest=rest_model)


@pytest.fixture(scope="module")
def rest_run(rest_model):
    return run_script("rest.js", env={"BAD_LIMIT_RATIO": "0.1"}, iterations=300, rest=rest_model)


def failed_checks(report):
    return {name: c["fails"] for name, c in report["checks"].items() if c["fails"]}


def assert_executors_and_thresholds(report, duration_metric):
    scenarios = report["options"]["scenarios"]
    executors = {s["executor"] for s in scenarios.values()}
    assert executors == {"ramping-vus", "ramping-arrival-rate"}
    for name, scenario in scenarios.items():
        targets = [stage["target"] for stage in scenario["stages"]]
        hold = targets[1]
        assert max(targets) > hold, f"{name}: no peak stage above the hold level {targets}"
        assert targets[-1] == 0, f"{name}: does not ramp down"
        assert scenario["exec"] in report["exports"]
    thresholds = report["options"]["thresholds"]
    assert duration_metric in thresholds
    assert "checks" in thresholds
    declared = K6_BUILTIN_METRICS | set(report["metrics"])
    for key, exprs in thresholds.items():
        assert threshold_metric(key) in declared, f"threshold on unknown metric {key}"
        for expr in exprs:
            assert re.fullmatch(r"(p\(\d+(\.\d+)?\)|avg|min|max|med|rate|count|value)\s*[<>]=?\s*[\d.]+", expr), expr


def test_grpc_script_loads_the_repo_proto(grpc_run):
    (load,) = grpc_run["grpc"]["loads"]
    resolved = [(LOAD_DIR / path).resolve() for path in load["importPaths"]]
    assert PROTO_ROOT.resolve() in resolved
    assert load["files"] == ["sumflow/v1/sum.proto"]
    assert (PROTO_ROOT / load["files"][0]).is_file()


def test_grpc_script_defaults_to_the_vagrant_app_node(grpc_run):
    connects = grpc_run["grpc"]["connects"]
    assert connects, "the script never connected"
    assert {c["address"] for c in connects} == {f"{VAGRANT_APP_IP}:50051"}
    assert all(c["params"].get("plaintext") is True for c in connects)
    assert {urlsplit(c["url"]).netloc for c in grpc_run["http"]} == {f"{VAGRANT_APP_IP}:8080"}


def test_grpc_script_names_only_existing_methods_and_fields(grpc_run):
    methods = proto_model()["methods"]
    calls = grpc_run["grpc"]["calls"]
    assert len(calls) >= 300
    for call in calls:
        assert call["method"] in methods
        names = {f["name"] for f in methods[call["method"]]["input"]}
        assert set(call["request"]) <= names, call["request"]


def test_grpc_script_mix_passes_every_check(grpc_run):
    assert grpc_run["errors"] == []
    assert failed_checks(grpc_run) == {}
    kinds = {call["params"]["tags"]["kind"] for call in grpc_run["grpc"]["calls"]}
    assert kinds == {"fresh", "repeat", "invalid"}
    for prefix in ("fresh:", "repeat:", "invalid:"):
        assert any(name.startswith(prefix) and c["passes"] > 0 for name, c in grpc_run["checks"].items())


def test_grpc_script_compares_accepted_with_applied(grpc_run):
    accepted = grpc_run["metrics"]["sumflow_accepted_new"]["values"]["count"]
    assert accepted == grpc_run["system"]["applied"] > 0
    assert grpc_run["metrics"]["sumflow_applied_delta"]["values"]["value"] == accepted
    assert "applied check: OK\n" in grpc_run["summary"]["stdout"]


def test_grpc_script_options(grpc_run):
    assert_executors_and_thresholds(grpc_run, "grpc_req_duration")


@pytest.mark.parametrize(
    ("fault", "failing_check"),
    [("flip_duplicate", "repeat: duplicate=true"), ("accept_invalid", "invalid: INVALID_ARGUMENT")],
)
def test_grpc_script_checks_catch_a_broken_server(rest_model, fault, failing_check):
    report = run_script("grpc.js", env=MIX_ENV, iterations=150, rest=rest_model, faults=(fault,))
    assert failing_check in failed_checks(report)


def test_grpc_script_reports_a_lost_event(rest_model):
    report = run_script("grpc.js", env=MIX_ENV, iterations=150, rest=rest_model, faults=("lose_event",))
    assert failed_checks(report) == {}
    assert "applied check: MISMATCH" in report["summary"]["stdout"]


def test_grpc_script_scenario_selection(rest_model):
    report = run_script("grpc.js", env={"SCENARIOS": "open", "RATE": "40"}, iterations=5, rest=rest_model)
    assert list(report["options"]["scenarios"]) == ["open"]
    assert report["options"]["scenarios"]["open"]["stages"][1]["target"] == 40
    assert report["errors"] == []


def test_rest_script_uses_only_documented_paths_and_parameters(rest_run):
    doc = openapi_document()
    calls = rest_run["http"]
    assert len(calls) >= 300
    for call in calls:
        url = urlsplit(call["url"])
        assert f"{url.scheme}://{url.netloc}" == REST_BASE
        assert url.path in doc["paths"], url.path
        op = doc["paths"][url.path][call["method"].lower()]
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        assert {k for k, _ in parse_qsl(url.query)} <= declared


def test_rest_script_reads_every_read_endpoint_and_passes_checks(rest_run):
    assert rest_run["errors"] == []
    assert failed_checks(rest_run) == {}
    paths = {urlsplit(c["url"]).path for c in rest_run["http"]}
    assert paths == {"/api/total", "/api/summations", "/api/final", "/healthz", "/readyz"}
    assert rest_run["checks"]["bad limit: 400"]["passes"] > 0
    assert rest_run["metrics"]["http_req_failed"]["values"]["rate"] == 0


def test_rest_script_think_time_is_random(rest_run):
    sleeps = rest_run["sleeps"]
    assert sleeps["count"] == 600  # one per iteration, two scenarios
    assert 0.3 <= sleeps["min"] < sleeps["max"] <= 2


def test_rest_script_options(rest_run):
    assert_executors_and_thresholds(rest_run, "http_req_duration")
    assert "http_req_failed" in rest_run["options"]["thresholds"]


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
    common = (LOAD_DIR / "lib" / "common.js").read_text()
    assert f"DEFAULT_APP_HOST = '{VAGRANT_APP_IP}'" in common
