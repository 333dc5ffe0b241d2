"""observe_many (bulk histogram observation on the consumer's hot path) equals observe() one by one;
the DLQ metric's reason labels are the invalid events' codes."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram

from sumflow.domain.events import InvalidReason
from sumflow.observability.accumulator_telemetry import observe_many
from sumflow.observability.metrics import E2E_BUCKETS


def test_observe_many_matches_observe():
    rng = random.Random(3)
    values = [rng.choice([0.0, 0.001, 0.1, 300.0, 1e6]) if i % 5 == 0 else rng.uniform(0, 400) for i in range(5000)]
    one, many = CollectorRegistry(), CollectorRegistry()
    h_one = Histogram("lat_seconds", "x", buckets=E2E_BUCKETS, registry=one)
    h_many = Histogram("lat_seconds", "x", buckets=E2E_BUCKETS, registry=many)
    for v in values:
        h_one.observe(v)
    observe_many(h_many, values)

    def samples(registry):
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in registry.collect() for s in m.samples}

    got, want = samples(many), samples(one)
    sum_key = ("lat_seconds_sum", ())
    assert abs(got.pop(sum_key) - want.pop(sum_key)) < 1e-6 * sum(values)
    got = {k: v for k, v in got.items() if not k[0].endswith("_created")}
    want = {k: v for k, v in want.items() if not k[0].endswith("_created")}
    assert got == want


def test_dlq_reason_labels_are_the_codes_dashboards_and_alerts_use():
    """A bounded set: exactly these label values (renaming one breaks dashboards and alert rules)."""
    assert {code.value for code in InvalidReason} == {
        "invalid_json",
        "not_an_object",
        "missing_field",
        "invalid_request_id",
        "out_of_range",
        "wrong_type",
        "wrong_result",
        "unsupported_version",
        "too_large",
        "empty",
    }
