"""PromQL shared by dashboards and documented next to the alert rules (same thresholds, same codes).

Conventions: `$__rate_interval` is Grafana's rate window; series carry `job` and `instance` from the
scrape config; a sumflow process is named by joining `sumflow_build_info{service=...}` on (job, instance),
so panels do not depend on how the scrape jobs are named.
"""

from __future__ import annotations

RATE = "$__rate_interval"

# gRPC codes that mean the adder failed (client mistakes such as INVALID_ARGUMENT are not errors of ours).
SERVER_ERROR_CODES = "UNKNOWN|DEADLINE_EXCEEDED|RESOURCE_EXHAUSTED|UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS"

GRPC_REQUESTS = "sumflow_grpc_requests_total"
GRPC_DURATION = "sumflow_grpc_request_duration_seconds_bucket"


def rate_sum(metric: str, by: str = "", selector: str = "") -> str:
    group = f" by ({by})" if by else ""
    return f"sum{group} (rate({metric}{selector}[{RATE}]))"


def replicas_rate(metric: str, by: str = "") -> str:
    """The rate of a stream every accumulator replica sees in full (each reads every partition): the
    fastest replica's, not their sum, which would count each event once per replica."""
    group = f" by ({by})" if by else ""
    return f"max{group} (rate({metric}[{RATE}]))"


def quantile(q: float, bucket_metric: str, by: str = "") -> str:
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({bucket_metric}[{RATE}])))"


def per_service(expr: str) -> str:
    """Attach the `service` label of sumflow_build_info to a process_* expression."""
    return f"{expr} * on (job, instance) group_left (service) sumflow_build_info"


_SERVER_ERROR_SELECTOR = '{code=~"' + SERVER_ERROR_CODES + '"}'
_NOT_SERVER_ERROR_SELECTOR = '{code!~"' + SERVER_ERROR_CODES + '"}'

# 1 - (calls without a server error / all calls): has a value whenever there is traffic, even with no
# errors, so "no data" on this panel means "no traffic", never "no errors".
SERVER_ERROR_RATIO = f"1 - {rate_sum(GRPC_REQUESTS, selector=_NOT_SERVER_ERROR_SELECTOR)} / {rate_sum(GRPC_REQUESTS)}"
DEDUPE_HIT_RATIO = (
    rate_sum("sumflow_adder_dedupe_lookups_total", selector='{outcome="duplicate"}')
    + " / "
    + rate_sum("sumflow_adder_dedupe_lookups_total")
)
