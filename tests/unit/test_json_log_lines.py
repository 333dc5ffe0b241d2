"""Every log line is one JSON object, whatever a caller puts in `extra=` (the formatter never fails)."""

from __future__ import annotations

import json
import logging

import pytest

from sumflow.observability.logging import JsonFormatter


class _Opaque:
    def __str__(self) -> str:
        return "opaque-object"


def _line(**extra: object) -> dict[str, object]:
    record = logging.makeLogRecord({"name": "sumflow.test", "levelname": "INFO", "msg": "hello", "args": ()})
    record.__dict__.update(extra)
    text = JsonFormatter("accumulator").format(record)
    assert "\n" not in text
    return json.loads(text)


def test_offsets_keyed_by_partition_number_are_logged_with_string_keys() -> None:
    doc = _line(next_offsets={0: 17, 3: 42})
    assert doc["next_offsets"] == {"0": 17, "3": 42}
    assert doc["msg"] == "hello" and doc["service"] == "accumulator"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({(0, "summation"): 5}, {"(0, 'summation')": 5}),  # tuple keys: orjson refuses them
        ({"big": 2**70}, {"big": 2**70}),  # beyond 64 bits: orjson refuses, JSON holds it
        ({"nan": float("nan")}, {"nan": None}),  # NaN is no JSON number: null
        ({_Opaque(): [_Opaque()]}, {"opaque-object": ["opaque-object"]}),
    ],
)
def test_values_orjson_refuses_still_give_one_json_object(extra: dict[object, object], expected: object) -> None:
    assert _line(field=extra)["field"] == expected
