"""Alert rules: valid for promtool, unit-tested (fire and not fire) and built from exported names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.observability.contract import exported_metric_names
from tests.observability.promql import metric_names

REPO = Path(__file__).resolve().parents[2]
RULES = sorted((REPO / "observability/prometheus/rules").glob("*.yml"))
RULE_TESTS = sorted((REPO / "observability/prometheus/tests").glob("*.test.yml"))
REQUIRED_ALERTS = {
    "SumflowTargetDown",
    "SumflowAdderErrorRatioHigh",
    "SumflowAdderLatencyP99High",
    "SumflowConsumerLagGrowing",
    "SumflowDlqReceivingEvents",
    "SumflowDiskNearlyFull",
}


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: install Debian's prometheus package (scripts/install-system-deps.sh)"
    return path


def _alerts() -> dict[str, dict]:
    alerts = {}
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts[rule["alert"]] = rule
    return alerts


def test_promtool_check_rules():
    assert RULES
    result = subprocess.run([_promtool(), "check", "rules", *map(str, RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass():
    assert RULE_TESTS
    result = subprocess.run(
        [_promtool(), "test", "rules", *map(str, RULE_TESTS)], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_required_alerts_exist_with_severity_and_summary():
    alerts = _alerts()
    assert set(alerts) >= REQUIRED_ALERTS, REQUIRED_ALERTS - set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_every_alert_has_a_firing_and_a_quiet_case():
    fired, quiet = set(), set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = set(_alerts())
    assert alerts <= fired, f"alerts never shown to fire: {alerts - fired}"
    assert alerts <= quiet, f"alerts never shown to stay quiet: {alerts - quiet}"


def test_rules_use_only_exported_names():
    exported = exported_metric_names()
    for name, rule in _alerts().items():
        for metric in metric_names(rule["expr"]):
            assert metric in exported or metric.startswith(("node_", "up")), f"{name}: unknown metric {metric}"


def _markdown_anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add("".join(c for c in title if c.isalnum() or c in " -_").replace(" ", "-"))
    return anchors


def test_every_alert_has_a_runbook_section():
    runbooks = REPO / "docs" / "runbooks.md"
    anchors = _markdown_anchors(runbooks)
    alerts = _alerts()
    assert alerts
    for name, rule in alerts.items():
        url = rule["annotations"].get("runbook_url", "")
        assert url == f"docs/runbooks.md#{name.lower()}", f"{name}: runbook_url {url!r}"
        assert name.lower() in anchors, f"{name}: no '## {name}' section in docs/runbooks.md"
    sections = {line[3:].strip() for line in runbooks.read_text().splitlines() if line.startswith("## ")}
    assert sections == set(alerts), "docs/runbooks.md has a section per alert and no other"
