"""The text helpers the live observability test relies on: if these were wrong, it could pass vacuously."""

from __future__ import annotations

import pytest

from tests.observability.promql import loki_label_names, metric_names, with_bool_comparisons


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="kafka"} == 0', {"up"}),
        (
            "histogram_quantile(0.99, sum by (job, le) (rate(sumflow_grpc_request_duration_seconds_bucket[5m])))",
            {"sumflow_grpc_request_duration_seconds_bucket"},
        ),
        (
            "sum by (job, instance) (rate(process_cpu_seconds_total[$__rate_interval]))"
            " * on (job, instance) group_left (service) sumflow_build_info",
            {"process_cpu_seconds_total", "sumflow_build_info"},
        ),
        (
            'node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes{a="b and c"}',
            {
                "node_memory_MemTotal_bytes",
                "node_memory_MemAvailable_bytes",
            },
        ),
        ("a unless a offset 5m", {"a"}),
        ("1e3 * foo:bar_rate5m", {"foo:bar_rate5m"}),
        ("max_over_time(x[1h:1m])", {"x"}),
    ],
)
def test_metric_names(expr, names):
    assert metric_names(expr) == names


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up == 0", "up == bool 0"),
        ('x{code!~"A|B", le=">1"} / y > 0.05 and z >= 1', 'x{code!~"A|B", le=">1"} / y > bool 0.05 and z >= bool 1'),
        ("a > bool 1", "a > bool 1"),
        ("a<=b", "a<= bool b"),
    ],
)
def test_with_bool_comparisons(expr, expected):
    assert with_bool_comparisons(expr) == expected


def test_loki_label_names():
    assert loki_label_names('{service=~"adder|accumulator", level=~"error"} |= "x"') == {"service", "level"}
    with pytest.raises(ValueError, match="stream selector"):
        loki_label_names('rate("x")')
