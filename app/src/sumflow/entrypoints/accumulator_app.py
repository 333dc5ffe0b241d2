"""The accumulator's HTTP API: a bottle app (served by waitress), JSON everywhere.

/api/total is the fast path: it returns bytes rendered once per state commit. Every error, including
unknown paths (404) and wrong methods (405), is a JSON body described in the OpenAPI document; no
client input can make a handler raise (a bug would still be answered as JSON 500).
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import bottle
import orjson
from prometheus_client import CollectorRegistry

from sumflow.domain.ledger import LedgerEntry
from sumflow.entrypoints.http_server import JSON, error_body, metrics_response
from sumflow.entrypoints.openapi import openapi_document
from sumflow.observability.metrics import AccumulatorMetrics
from sumflow.service_layer.accumulator_status import AccumulatorStatus

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
_LIMIT = re.compile(r"[0-9]{1,4}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def summation_json(entry: LedgerEntry) -> dict[str, Any]:
    event = entry.event
    return {
        "request_id": event.request_id,
        "first_number": event.first_number,
        "second_number": event.second_number,
        "result": event.result,
        "partition": event.partition,
        "offset": event.offset,
        "applied_at": _iso(entry.applied_at),
        "produced_at_ms": event.produced_at_ms,
    }


def parse_limit(raw: str | None) -> int:
    """`limit` query value -> int in 1..1000, or ValueError with the message for the 400 body."""
    if raw is None:
        return DEFAULT_LIMIT
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer between 1 and {MAX_LIMIT}")
    return int(raw)


def create_app(
    status: AccumulatorStatus,
    recent: Callable[[int], list[LedgerEntry]],
    registry: CollectorRegistry,
) -> bottle.Bottle:
    app = bottle.Bottle(catchall=True)
    app.config["json.enable"] = False
    openapi_bytes = orjson.dumps(openapi_document())

    def json_error(err: bottle.HTTPError) -> bytes:
        bottle.response.content_type = JSON
        message = err.body if isinstance(err.body, str) and err.body else HTTPStatus(err.status_code).phrase
        if err.status_code >= 500:
            message = "internal error"  # never leak a traceback
        return error_body(err.status_code, message)

    app.default_error_handler = json_error  # type: ignore[method-assign]

    @app.get("/api/total")
    def total() -> bytes:
        bottle.response.content_type = JSON
        return status.snapshot.total_json

    @app.get("/api/final")
    def final() -> bytes:
        bottle.response.content_type = "text/plain; charset=utf-8"
        return status.snapshot.final_text

    @app.get("/api/summations")
    def summations() -> bytes:
        bottle.response.content_type = JSON
        try:
            limit = parse_limit(bottle.request.query.get("limit"))
        except ValueError as exc:
            bottle.response.status = 400
            return error_body(400, str(exc))
        try:
            rows = recent(limit)
        except sqlite3.Error as exc:
            bottle.response.status = 503
            return error_body(503, f"state database unavailable: {exc}")
        return orjson.dumps({"summations": [summation_json(r) for r in rows], "limit": limit})

    @app.get("/healthz")
    def healthz() -> bytes:
        bottle.response.content_type = JSON
        healthy, reason = status.health()
        if healthy:
            return b'{"status":"ok"}'
        bottle.response.status = 503
        return orjson.dumps({"status": "unhealthy", "reason": reason})

    @app.get("/readyz")
    def readyz() -> bytes:
        bottle.response.content_type = JSON
        ready, reason = status.readiness()
        if not ready:
            bottle.response.status = 503
        return orjson.dumps({"status": "ready" if ready else "not_ready", "reason": reason})

    @app.get("/metrics")
    def metrics() -> bytes:
        body, content_type = metrics_response(registry, bottle.request.headers.get("Accept", ""))
        bottle.response.content_type = content_type
        return body

    @app.get("/api/openapi.json")
    def openapi() -> bytes:
        bottle.response.content_type = JSON
        return openapi_bytes

    return app


def instrument(app: WsgiApp, metrics: AccumulatorMetrics) -> WsgiApp:
    """WSGI middleware: count requests by method/route/status and time them by route."""
    counters: dict[tuple[str, str, str], Any] = {}
    histograms: dict[str, Any] = {}

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        seen: list[str] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen.append(status)
            return start_response(status, headers, exc_info)

        body = app(environ, capture)
        route_obj = environ.get("bottle.route")
        route = route_obj.rule if route_obj is not None and seen and seen[0][:3] != "404" else "unmatched"
        method = environ.get("REQUEST_METHOD", "")
        method = method if method in _METHODS else "other"
        code = seen[0][:3] if seen else "500"
        key = (method, route, code)
        counter = counters.get(key)
        if counter is None:
            counter = counters[key] = metrics.http_requests.labels(method, route, code)
        counter.inc()
        histogram = histograms.get(route)
        if histogram is None:
            histogram = histograms[route] = metrics.http_duration.labels(route)
        histogram.observe(time.perf_counter() - started)
        return body

    return wsgi
