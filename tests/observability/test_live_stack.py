"""The proof of issue 4 against real processes: a real Prometheus (exemplar storage on) scrapes the real
adder and accumulator (subprocesses, real Kafka broker) and a real node_exporter while traffic flows;
then every dashboard query and every alert quantity must return data, exemplars carry trace ids, the
spans of one request arrive over OTLP as one correctly parented trace, and log lines are JSON with the
fields the Alloy pipeline turns into labels.

Deploy-only series (the Kafka broker's JMX exporter, scrape job "kafka") cannot exist here: they are
checked by name against the reviewed allow-list in tests/observability/contract.py instead, and the
test says so in its output.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import yaml

from dashgen.render import OUTPUT_DIR
from harness.processes import ServiceProcess
from harness.prometheus import node_exporter, prometheus
from harness.stack import sumflow_stack
from tests.observability.contract import DEPLOY_ONLY_METRICS, DEPLOY_ONLY_SELECTORS, LOKI_LABELS
from tests.observability.otlp_sink import OtlpSink
from tests.observability.promql import (
    dashboard_queries,
    grafana_to_prometheus,
    metric_names,
    with_bool_comparisons,
)
from tests.observability.traffic import drive, produce_invalid_record

REPO = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((REPO / "observability/prometheus/rules").glob("*.yml"))
TRAFFIC_SECONDS = 35.0
RATE_WINDOW = "10s"  # stands in for Grafana's $__rate_interval at a 1 s scrape interval


# Both services export spans to the test's OTLP sink, quickly, so the test need not wait 5 s.
SERVICE_ENV = {"SUMFLOW_INSTANCE": "observability-test", "OTEL_BSP_SCHEDULE_DELAY": "300"}


class Live:
    def __init__(self, prom, sink, stack, report, start, end) -> None:
        self.prom, self.sink, self.stack, self.report = prom, sink, stack, report
        self.start, self.end = start, end

    def series_with_values(self, expr: str) -> list[dict]:
        result = self.prom.query_range(expr, self.start, self.end)
        return [s for s in result if any(math.isfinite(float(v)) for _, v in s["values"])]


@pytest.fixture(scope="module")
def live(kafka_broker, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("observability")
    sink = OtlpSink()
    service_env = {**SERVICE_ENV, "SUMFLOW_OTLP_ENDPOINT": sink.start()}
    try:
        with (
            node_exporter(workdir) as node_target,
            sumflow_stack(
                kafka_broker.bootstrap,
                workdir,
                partitions=2,
                adder_env=service_env,
                accumulator_env=service_env,
            ) as stack,
            prometheus(
                workdir,
                {
                    "sumflow-adder": {"targets": [f"127.0.0.1:{stack.adder.metrics_port}"]},
                    "sumflow-accumulator": {"targets": [f"127.0.0.1:{stack.accumulator.http_port}"]},
                    "node": {"targets": [node_target]},
                },
                RULE_FILES,
            ) as prom,
        ):
            start = time.time()
            produce_invalid_record(kafka_broker.bootstrap, stack.topic)
            report = drive(stack.adder.target, seconds=TRAFFIC_SECONDS, max_calls=2000, rate_per_second=15)
            time.sleep(3)  # last scrapes after the traffic
            yield Live(prom, sink, stack, report, start, time.time())
    finally:
        sink.stop()


def _dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(OUTPUT_DIR.glob("*.json"))}


def _alert_rules() -> list[dict]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


def _deploy_only(expr: str) -> bool:
    if expr.strip() in DEPLOY_ONLY_SELECTORS:
        return True
    names = metric_names(expr)
    return bool(names) and names <= set(DEPLOY_ONLY_METRICS)


def test_traffic_covered_every_outcome(live):
    codes = live.report.codes
    assert codes.get("OK", 0) > 100, codes
    assert codes.get("INVALID_ARGUMENT", 0) > 0, codes
    assert len(codes) >= 3, codes  # OK, INVALID_ARGUMENT and the conflict's code
    assert live.prom.targets_up() == {"sumflow-adder": "up", "sumflow-accumulator": "up", "node": "up"}


def test_every_dashboard_query_returns_data(live, capsys):
    exported = set(live.prom.api("label/__name__/values"))
    checked, by_name = [], []
    for name, dashboard in _dashboards().items():
        for query in dashboard_queries(dashboard):
            if query.datasource == "loki":
                assert _loki_ok(query.expr), query
                continue
            if query.datasource != "prometheus":
                continue  # Tempo TraceQL: proven by the trace test below
            if _deploy_only(query.expr):
                for metric in metric_names(query.expr) - {"up"}:
                    assert metric in DEPLOY_ONLY_METRICS, f"{name} {query.panel}: {metric} not in the allow-list"
                by_name.append(f"{query.panel}: {query.expr}")
                continue
            missing = metric_names(query.expr) - exported
            assert not missing, f"{name} / {query.panel}: metrics nobody exports: {missing}"
            expr = grafana_to_prometheus(query.expr, RATE_WINDOW)
            assert live.series_with_values(expr), f'{name} / "{query.panel}" would say "No data": {expr}'
            checked.append(query.panel)
    with capsys.disabled():
        print(f"\n  evaluated {len(checked)} dashboard queries with data")
        for line in by_name:
            print(f"  deploy-only, checked by name against the reviewed allow-list: {line}")
    assert checked


def _loki_ok(expr: str) -> bool:
    from tests.observability.promql import loki_label_names

    return loki_label_names(expr) <= LOKI_LABELS


def test_every_alert_quantity_returns_data(live):
    rules = _alert_rules()
    assert rules
    for rule in rules:
        expr = rule["expr"]
        live.prom.api("query", query=expr)  # the real expression evaluates without error
        quantity = with_bool_comparisons(expr)
        assert live.series_with_values(quantity), f"{rule['alert']}: no data for {quantity}"
    loaded = live.prom.api("rules")["groups"]
    health = {r["name"]: r["health"] for g in loaded for r in g["rules"]}
    assert set(health) == {r["alert"] for r in rules}
    assert set(health.values()) == {"ok"}, health


def test_latency_exemplars_carry_trace_ids_of_exported_spans(live):
    data = live.prom.api(
        "query_exemplars",
        query="sumflow_grpc_request_duration_seconds_bucket",
        start=f"{live.start:.3f}",
        end=f"{live.end:.3f}",
    )
    trace_ids = {e["labels"].get("trace_id") for series in data for e in series["exemplars"]}
    trace_ids.discard(None)
    assert trace_ids, f"no exemplar with a trace_id stored: {data}"
    spans = live.sink.wait_for(lambda s: trace_ids & {x.trace_id for x in s}, timeout=10)
    assert trace_ids & {s.trace_id for s in spans}, "exemplar trace ids match no exported span"


def test_one_request_is_one_trace_across_adder_kafka_accumulator(live):
    request_id = live.report.traced_request_id

    def complete(spans):
        servers = [s for s in spans if s.kind == "SERVER" and s.attributes.get("request_id") == request_id]
        if not servers:
            return False
        trace = [s for s in spans if s.trace_id == servers[0].trace_id]
        return any(s.name == "ledger commit" for s in trace) or any(
            s.name == "ledger commit" and any(link[0] == servers[0].trace_id for link in s.links) for s in spans
        )

    spans = live.sink.wait_for(complete, timeout=15)
    servers = [s for s in spans if s.kind == "SERVER" and s.attributes.get("request_id") == request_id]
    assert len(servers) == 1, servers
    server = servers[0]
    assert server.service == "sumflow-adder"
    assert server.parent_span_id == ""  # the client sent no trace context: the call starts the trace
    trace = {s.span_id: s for s in spans if s.trace_id == server.trace_id}
    producers = [s for s in trace.values() if s.kind == "PRODUCER"]
    assert len(producers) == 1, list(trace.values())
    producer = producers[0]
    assert producer.service == "sumflow-adder"
    assert producer.parent_span_id == server.span_id
    consumers = [s for s in trace.values() if s.kind == "CONSUMER"]
    assert len(consumers) == 1, list(trace.values())
    consumer = consumers[0]
    assert consumer.service == "sumflow-accumulator"
    assert consumer.name == "summation process"
    assert consumer.parent_span_id == producer.span_id  # parented through the Kafka record header
    assert consumer.attributes.get("sumflow.request_id") == request_id
    commits = [s for s in spans if s.name == "ledger commit"]
    in_trace = [c for c in commits if c.trace_id == server.trace_id]
    linked = [c for c in commits if (consumer.trace_id, consumer.span_id) in c.links]
    assert in_trace or linked, "the state write of this event is neither in its trace nor linked to it"
    for commit in in_trace:
        assert commit.service == "sumflow-accumulator"
        assert commit.parent_span_id in trace


ALLOY_LABEL_FIELDS = {"level", "service"}
LEVELS = {"debug", "info", "warning", "error", "critical"}


def _log_lines(service: ServiceProcess) -> list[dict]:
    """Every line the service wrote (stdout and stderr) as JSON objects."""
    lines = [line for line in service.output_lines() if line.strip()]
    assert lines, f"{service.log_path} is empty"
    docs = []
    for line in lines:
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{service.log_path.name}: not a JSON line: {line[:300]}")
        assert isinstance(doc, dict), line
        docs.append(doc)
    return docs


@pytest.mark.parametrize("service", ["adder", "accumulator"])
def test_log_lines_are_json_with_alloy_label_fields(live, service):
    docs = _log_lines(getattr(live.stack, service))
    for doc in docs:
        assert set(doc) >= ALLOY_LABEL_FIELDS, doc
        assert doc["service"] == service, doc
        assert doc["level"] in LEVELS, doc
        assert {"ts", "msg", "logger"} <= set(doc), doc


def test_adder_call_log_lines_carry_request_and_trace_ids(live):
    docs = _log_lines(live.stack.adder)
    request_id = live.report.traced_request_id
    mine = [d for d in docs if d.get("request_id") == request_id]
    assert mine, "no log line for the traced call"
    line = mine[0]
    assert len(line.get("trace_id", "")) == 32 and len(line.get("span_id", "")) == 16, line
    spans = live.sink.wait_for(lambda s: any(x.trace_id == line["trace_id"] for x in s), timeout=10)
    server = [s for s in spans if s.trace_id == line["trace_id"] and s.kind == "SERVER"]
    assert server and server[0].attributes.get("request_id") == request_id, "log line's trace_id is not its call's"
