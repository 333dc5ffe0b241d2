"""Summation events as raw Kafka record values, written here by hand exactly as the adder writes them
(not with sumflow.domain.events, so the codec under test is never the one that made its input)."""

from __future__ import annotations

import time

import orjson


def event_value(
    request_id: str, first: int, second: int, *, result: int | None = None, produced_at_ms: int | None = None
) -> bytes:
    """A version-1 event; `result` defaults to the true sum, `produced_at_ms` to now."""
    return orjson.dumps(
        {
            "v": 1,
            "request_id": request_id,
            "first_number": first,
            "second_number": second,
            "result": first + second if result is None else result,
            "produced_at_ms": int(time.time() * 1000) if produced_at_ms is None else produced_at_ms,
        }
    )
