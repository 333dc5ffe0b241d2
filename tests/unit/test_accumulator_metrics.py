"""observe_many (bulk histogram observation on the consumer's hot path) equals observe() one by one."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram

from sumflow.accumulator_service import observe_many, reason_label
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


def test_dlq_reason_labels_are_bounded():
    assert reason_label("value is not valid JSON") == "invalid_json"
    assert reason_label("field first_number out of int64 range") == "out_of_range"
    assert reason_label("field first_number must be an integer") == "wrong_type"
    assert reason_label("missing field result") == "missing_field"
    assert reason_label("something new") == "other"
