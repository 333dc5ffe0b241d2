"""The committed dashboards are exactly the generator's output and only use names that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from dashgen.datasources import LOKI_UID, PROMETHEUS_UID, TEMPO_UID
from dashgen.render import OUTPUT_DIR, render_all
from tests.observability.contract import (
    DEPLOY_ONLY_METRICS,
    LOKI_LABELS,
    exported_metric_names,
)
from tests.observability.promql import dashboard_queries, loki_label_names, metric_names

REPO = Path(__file__).resolve().parents[2]

# Panels that issue 4 asks the overview to have (by title).
REQUIRED_PANELS = {
    "Request rate by code",
    "Error rate by code",
    "Call latency p50 / p95 / p99",
    "Dedupe hit ratio",
    "Kafka produce latency",
    "Events applied / s",
    "Consumer lag per partition",
    "End-to-end latency p50 / p95 / p99",
    "DLQ rate",
    "Total over time",
    "CPU per service",
    "Memory per service",
    "CPU per host",
    "Memory per host",
    "Kafka broker up",
    "Error logs",
    "Slowest recent calls",
}
# Exporters other than ours whose names the live test proves by scraping them (node_exporter) or
# Prometheus itself adds (up).
OTHER_SOURCES = ("node_", "up")


def _dashboards():
    return {path.name: json.loads(path.read_text()) for path in sorted(OUTPUT_DIR.glob("*.json"))}


def test_committed_json_is_the_generator_output():
    rendered = render_all()
    committed = {path.name: path.read_text() for path in OUTPUT_DIR.glob("*.json")}
    assert sorted(committed) == sorted(rendered), "a dashboard file exists that the generator does not produce"
    for name, text in rendered.items():
        assert committed[name] == text, f"{name} differs from the generator: run `make dashboards`"


def test_overview_has_every_panel_of_issue_4():
    overview = _dashboards()["sumflow-overview.json"]
    assert overview["uid"] == "sumflow-overview"
    assert overview["title"] == "sumflow overview"
    titles = {panel["title"] for panel in overview["panels"]}
    assert titles >= REQUIRED_PANELS, REQUIRED_PANELS - titles
    ids = [panel["id"] for panel in overview["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", sorted(_dashboards()))
def test_queries_use_provisioned_datasources_and_known_names(name):
    exported = exported_metric_names()
    queries = dashboard_queries(_dashboards()[name])
    assert queries
    for query in queries:
        assert query.datasource in {PROMETHEUS_UID, LOKI_UID, TEMPO_UID}, query
        assert query.expr.strip(), query
        if query.datasource == PROMETHEUS_UID:
            for metric in metric_names(query.expr):
                known = metric in exported or metric in DEPLOY_ONLY_METRICS or metric.startswith(OTHER_SOURCES)
                assert known, f"{query.panel}: {metric} is not exported by sumflow (see metrics.py)"
        elif query.datasource == LOKI_UID:
            assert loki_label_names(query.expr) <= LOKI_LABELS, query


def test_latency_panels_ask_for_exemplars():
    overview = _dashboards()["sumflow-overview.json"]
    with_exemplars = [
        panel["title"]
        for panel in overview["panels"]
        if any(target.get("exemplar") for target in panel.get("targets", []))
    ]
    assert "Call latency p50 / p95 / p99" in with_exemplars
    assert "End-to-end latency p50 / p95 / p99" in with_exemplars


def _jmx_exporter_name(rules: list[dict], mbean: str) -> str | None:
    """The name the JMX exporter gives `mbean` (first rule whose pattern matches wins)."""
    for rule in rules:
        match = re.fullmatch(rule["pattern"], mbean)
        if match is None:
            continue
        name = rule.get("name")
        if not name:
            return None
        for index, group in enumerate(match.groups(), start=1):
            name = name.replace(f"${index}", group or "")
        return re.sub(r"[^a-zA-Z0-9_:]", "_", name).lower()
    return None


def test_deploy_only_names_are_what_the_kafka_roles_jmx_rules_produce():
    """The allow-list cannot drift from roles/kafka's JMX exporter config: apply its rules to each MBean."""
    template = REPO / "roles/kafka/templates/jmx-exporter.yml.j2"
    config = yaml.safe_load("\n".join(line for line in template.read_text().splitlines() if "{{" not in line))
    assert config.get("lowercaseOutputName") is True
    for name, mbean in DEPLOY_ONLY_METRICS.items():
        assert _jmx_exporter_name(config["rules"], mbean) == name, (name, mbean)


def _deployed_grafana_version() -> str:
    """major.minor of the Grafana the playbooks install (the default of grafana_stack_grafana_version)."""
    defaults = yaml.safe_load((REPO / "roles/grafana_stack/defaults/main.yml").read_text())
    match = re.fullmatch(r"(\d+)\.(\d+)\.\d+", str(defaults["grafana_stack_grafana_version"]))
    assert match, "grafana_stack_grafana_version in roles/grafana_stack/defaults/main.yml is not x.y.z"
    return f"{match.group(1)}.{match.group(2)}"


def test_dashboards_are_built_for_the_deployed_grafana_schema():
    from dashgen.grafana_target import GRAFANA_VERSION, SCHEMA_VERSION, SCHEMA_VERSIONS

    deployed = _deployed_grafana_version()
    assert deployed == GRAFANA_VERSION, f"playbooks deploy Grafana {deployed}: update dashgen/grafana_target.py"
    assert deployed in SCHEMA_VERSIONS, f"no dashboard schemaVersion known for Grafana {deployed}"
    for name, doc in _dashboards().items():
        assert doc["schemaVersion"] == SCHEMA_VERSION == SCHEMA_VERSIONS[deployed], name
