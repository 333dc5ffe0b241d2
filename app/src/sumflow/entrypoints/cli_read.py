"""`sumflow total`, `sumflow summations` and `sumflow status`: what the services already expose, read.

status asks the adder's gRPC health service and its /metrics (build info), and the accumulator's
/healthz, /readyz and /metrics (build info, consumer lag per partition); both /metrics with the
metrics credentials when given (Endpoints.metrics_authorization). Exit status of status:
0 when the adder is SERVING and the accumulator ready, 1 otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sumflow.entrypoints.cli_endpoints import CliError, Endpoints

HTTP_ERROR_EXIT = 3


def _get_json(endpoints: Endpoints, path: str) -> Any:
    url = f"{endpoints.accumulator}{path}"
    status, body = endpoints.http_get(url)
    try:
        doc = json.loads(body)
    except ValueError:
        raise CliError(f"GET {url}: HTTP {status}, not JSON: {body[:200]!r}", HTTP_ERROR_EXIT) from None
    if status != 200:
        message = doc.get("message") if isinstance(doc, dict) else None
        raise CliError(f"GET {url}: HTTP {status}: {message or body[:200]!r}", HTTP_ERROR_EXIT)
    return doc


def total(endpoints: Endpoints) -> dict[str, int]:
    return _get_json(endpoints, "/api/total")


def format_total(doc: dict[str, int]) -> str:
    applied = doc["applied"]
    return f"total {doc['total']}  ({applied} summation{'' if applied == 1 else 's'} applied)"


def summations(endpoints: Endpoints, limit: int) -> list[dict[str, Any]]:
    return _get_json(endpoints, f"/api/summations?limit={limit}")["summations"]


def format_summations(rows: list[dict[str, Any]]) -> str:
    header = ("applied at", "request id", "first", "second", "result")
    table = [header] + [
        (r["applied_at"], r["request_id"], str(r["first_number"]), str(r["second_number"]), str(r["result"]))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for row in table:
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    if not rows:
        lines.append("(no summations applied yet)")
    return "\n".join(lines)


# -- status ----------------------------------------------------------------------------------------
@dataclass
class ServiceStatus:
    name: str
    endpoint: str
    healthy: bool = False
    ready: bool = False
    detail: str = ""
    version: str | None = None
    lag: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # why something could not be read (--json shows it)

    def json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "endpoint": self.endpoint,
            "healthy": self.healthy,
            "ready": self.ready,
            "detail": self.detail,
            "version": self.version,
            "error": self.error,
        }
        if self.name == "accumulator":
            doc["consumer_lag"] = {p: int(v) for p, v in self.lag.items()}
        return doc


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text -> {sample name: [(labels, value), ...]}."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def build_version(samples: dict[str, list[tuple[dict[str, str], float]]]) -> str | None:
    for labels, _ in samples.get("sumflow_build_info", []):
        return labels.get("version")
    return None


def _metrics(endpoints: Endpoints, base: str) -> dict[str, list[tuple[dict[str, str], float]]] | str:
    """The parsed samples, or why they could not be read."""
    url = f"{base}/metrics"
    headers = endpoints.metrics_authorization(url)  # an unreadable password file stops the command (exit 2)
    try:
        status, body = endpoints.http_get(url, headers)
    except CliError as exc:
        return str(exc)
    if status != 200:
        return f"GET {base}/metrics: HTTP {status}"
    return parse_metrics(body.decode("utf-8", "replace"))


def adder_status(endpoints: Endpoints) -> ServiceStatus:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    result = ServiceStatus("adder", endpoints.adder)
    with endpoints.grpc_channel() as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="sumflow.v1.SumService"), timeout=endpoints.timeout
            )
            serving = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            result.healthy = result.ready = serving == "SERVING"
            result.detail = serving
        except grpc.RpcError as exc:
            result.detail = "UNREACHABLE"
            result.error = f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
            return result
    metrics = _metrics(endpoints, endpoints.adder_metrics)
    if isinstance(metrics, str):
        result.error = f"metrics: {metrics}"
    else:
        result.version = build_version(metrics)
    return result


def accumulator_status(endpoints: Endpoints) -> ServiceStatus:
    result = ServiceStatus("accumulator", endpoints.accumulator)
    try:
        status, _ = endpoints.http_get(f"{endpoints.accumulator}/healthz")
        result.healthy = status == 200
        status, body = endpoints.http_get(f"{endpoints.accumulator}/readyz")
    except CliError as exc:
        result.detail = "unreachable"
        result.error = str(exc)
        return result
    result.ready = status == 200
    try:
        readiness = json.loads(body)
        result.detail = readiness.get("reason") or readiness.get("status", "")
    except (ValueError, AttributeError):
        result.detail = f"/readyz HTTP {status}"
    metrics = _metrics(endpoints, endpoints.accumulator)
    if isinstance(metrics, str):
        result.error = f"metrics: {metrics}"
    else:
        result.version = build_version(metrics)
        result.lag = {
            labels["partition"]: value for labels, value in metrics.get("sumflow_accumulator_consumer_lag", [])
        }
    return result


def format_status(statuses: list[ServiceStatus]) -> str:
    lines = []
    for s in statuses:
        parts = [f"{s.name:12}", f"{s.endpoint:24}"]
        if s.name == "adder":
            parts.append(f"health {s.detail}")
        else:
            parts.append(f"alive {'yes' if s.healthy else 'no'}")
            parts.append(f"ready {'yes' if s.ready else 'no'}" + ("" if s.ready else f" ({s.detail})"))
            if s.lag:
                lag = f"lag {sum(s.lag.values()):.0f}"
                if len(s.lag) > 1:
                    lag += (
                        " ("
                        + ", ".join(f"p{p} {v:.0f}" for p, v in sorted(s.lag.items(), key=lambda i: int(i[0])))
                        + ")"
                    )
                parts.append(lag)
            elif s.healthy:
                parts.append("lag unknown")
        parts.append(f"version {s.version or 'unknown'}")
        lines.append("  ".join(parts))
    return "\n".join(lines)
