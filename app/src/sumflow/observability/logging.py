"""JSON logs on stdout: one object a line, with the active trace and span ids.

Fields: ts (RFC 3339 UTC), level, logger, msg, service, and any `extra=` keys such as request_id.
Alloy turns `level` and `service` into Loki labels; trace_id links a line to its trace in Tempo.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import sys
from typing import Any

import orjson
from opentelemetry import trace

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "service": self.service,
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            doc["trace_id"] = format(ctx.trace_id, "032x")
            doc["span_id"] = format(ctx.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return to_json_line(doc)


def to_json_line(doc: dict[str, Any]) -> str:
    """One JSON object, whatever the values hold: keys that are not strings (a partition number, a
    tuple) become their str(), values JSON cannot hold become their str(). Never raises."""
    try:
        return orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # a key orjson cannot turn into a string (tuple), an int beyond 64 bits, deep nesting
        return json.dumps(_plain(doc, depth=0), ensure_ascii=False, allow_nan=False)


def _plain(value: Any, depth: int) -> Any:
    if depth > 32:
        return str(value)
    if isinstance(value, dict):
        return {str(key): _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item, depth + 1) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def setup_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kafka", "waitress"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
