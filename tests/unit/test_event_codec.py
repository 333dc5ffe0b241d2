import json
import re
import uuid

import orjson
import pytest

from sumflow.domain.events import InvalidEvent, decode_event, decode_fields, encode_event
from sumflow.domain.summation import INT64_MAX, validate_add


def _doc(**over):
    doc = {
        "v": 1,
        "request_id": str(uuid.uuid4()),
        "first_number": 3,
        "second_number": 4,
        "result": 7,
        "produced_at_ms": 1_700_000_000_000,
    }
    doc.update(over)
    return doc


def test_round_trip():
    cmd = validate_add(str(uuid.uuid4()), INT64_MAX, -1)
    event = decode_event(encode_event(cmd, 123))
    assert (event.request_id, event.first_number, event.second_number) == (cmd.request_id, INT64_MAX, -1)
    assert event.result == INT64_MAX - 1
    assert event.produced_at_ms == 123


def test_unknown_extra_fields_are_ignored():
    doc = _doc(extra={"nested": True}, note="x")
    assert decode_event(orjson.dumps(doc)).result == 7


def test_upper_case_id_is_canonicalised():
    rid = str(uuid.uuid4())
    assert decode_event(orjson.dumps(_doc(request_id=rid.upper()))).request_id == rid


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "not a JSON object"),
        (orjson.dumps({"v": 1}), "missing field request_id"),
        (orjson.dumps(_doc(request_id=5)), "must be a string"),
        (orjson.dumps(_doc(request_id="nope")), "not a UUID"),
        (orjson.dumps(_doc(first_number="3")), "first_number must be an integer"),
        (orjson.dumps(_doc(first_number=True)), "first_number must be an integer"),
        (orjson.dumps(_doc(second_number=1.5)), "second_number must be an integer"),
        (
            b'{"v":1,"request_id":"%s","first_number":99999999999999999999,"second_number":0,"result":0,'
            b'"produced_at_ms":1}' % str(uuid.uuid4()).encode(),
            "first_number must be an integer",
        ),
        (orjson.dumps(_doc(result=8)), "result is not"),
        (orjson.dumps(_doc(v=2)), "unsupported event version"),
        (orjson.dumps({k: v for k, v in _doc().items() if k != "produced_at_ms"}), "missing field produced_at_ms"),
        (b" " * (70 * 1024), "too large"),
    ],
)
def test_invalid_events_name_the_reason(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        decode_event(raw)


_FAST_PATH_CASES = [
    _doc(),
    _doc(request_id=str(uuid.uuid4()).upper()),
    _doc(request_id=str(uuid.uuid4()).replace("-", "")),
    _doc(request_id="not-a-uuid"),
    _doc(request_id=7),
    _doc(first_number=True, second_number=6, result=7),
    _doc(first_number=3.0),
    _doc(result=8),
    _doc(first_number=INT64_MAX + 1, second_number=-INT64_MAX - 1, result=0),
    _doc(produced_at_ms=INT64_MAX + 1),
    _doc(v=2),
    _doc(v=True),
    {k: v for k, v in _doc().items() if k != "v"},
    {k: v for k, v in _doc().items() if k != "second_number"},
    {**_doc(), "extra": [1, 2]},
]


@pytest.mark.parametrize("doc", _FAST_PATH_CASES)
def test_decode_fields_agrees_with_decode_event(doc):
    raw = _dumps(doc)
    try:
        ev = decode_event(raw)
    except InvalidEvent as exc:
        with pytest.raises(InvalidEvent, match=f"^{re.escape(str(exc))}$"):
            decode_fields(raw)
    else:
        assert decode_fields(raw) == (ev.request_id, ev.first_number, ev.second_number, ev.result, ev.produced_at_ms)


@pytest.mark.parametrize("raw", [None, b"", b"garbage", b"[1]", b"x" * (64 * 1024 + 1)])
def test_decode_fields_rejects_what_decode_event_rejects(raw):
    with pytest.raises(InvalidEvent) as expected:
        decode_event(raw)
    with pytest.raises(InvalidEvent, match=f"^{re.escape(str(expected.value))}$"):
        decode_fields(raw)


def _dumps(doc) -> bytes:
    # the stdlib writes ints beyond 64 bits that orjson refuses to encode
    return json.dumps(doc).encode()
