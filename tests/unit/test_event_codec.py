import json
import re
import uuid

import orjson
import pytest

from sumflow.domain.events import (
    InvalidEvent,
    InvalidReason,
    SummationEvent,
    check_event_doc,
    decode_event,
    encode_event,
)
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


def _dumps_big(**over) -> bytes:
    # the stdlib writes ints beyond 64 bits that orjson refuses to encode
    return json.dumps(_doc(**over)).encode()


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
    ("raw", "code", "reason"),
    [
        (None, "empty", "empty record value"),
        (b"{not json", "invalid_json", "value is not valid JSON"),
        (b"[1,2]", "not_an_object", "value is not a JSON object"),
        (orjson.dumps({"v": 1}), "missing_field", "missing field request_id"),
        (orjson.dumps(_doc(request_id=5)), "wrong_type", "field request_id must be a string"),
        (orjson.dumps(_doc(request_id="nope")), "invalid_request_id", "field request_id is not a UUID"),
        (orjson.dumps(_doc(first_number="3")), "wrong_type", "field first_number must be an integer"),
        (orjson.dumps(_doc(first_number=True)), "wrong_type", "field first_number must be an integer"),
        (orjson.dumps(_doc(second_number=1.5)), "wrong_type", "field second_number must be an integer"),
        (
            b'{"v":1,"request_id":"%s","first_number":99999999999999999999,"second_number":0,"result":0,'
            b'"produced_at_ms":1}' % str(uuid.uuid4()).encode(),
            "wrong_type",
            "field first_number must be an integer",
        ),
        (_dumps_big(first_number=2**63), "out_of_range", "field first_number out of int64 range"),
        (orjson.dumps(_doc(result=8)), "wrong_result", "result is not first_number + second_number"),
        (orjson.dumps(_doc(v=2)), "unsupported_version", "unsupported event version 2"),
        (
            orjson.dumps({k: v for k, v in _doc().items() if k != "produced_at_ms"}),
            "missing_field",
            "missing field produced_at_ms",
        ),
        (b" " * (70 * 1024), "too_large", "record value too large"),
    ],
)
def test_invalid_events_carry_a_code_and_the_reason(raw, code, reason):
    """The code is the DLQ metric's reason label, the text the DLQ record's dlq.reason header."""
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw)
    assert (caught.value.code, caught.value.reason, str(caught.value)) == (InvalidReason(code), reason, reason)


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
def test_fast_path_agrees_with_the_field_by_field_check(doc):
    """decode_event's fast path accepts exactly what check_event_doc accepts, with the same event."""
    raw = _dumps(doc)
    try:
        expected = check_event_doc(orjson.loads(raw), 2, 17)
    except InvalidEvent as exc:
        with pytest.raises(InvalidEvent, match=f"^{re.escape(str(exc))}$") as caught:
            decode_event(raw, 2, 17)
        assert caught.value.code == exc.code
    else:
        assert decode_event(raw, 2, 17) == expected
        assert (expected.partition, expected.offset) == (2, 17)


def test_an_event_not_read_from_the_topic_has_no_position():
    event = decode_event(orjson.dumps(_doc()))
    assert type(event) is SummationEvent and (event.partition, event.offset) == (-1, -1)


def _dumps(doc) -> bytes:
    # the stdlib writes ints beyond 64 bits that orjson refuses to encode
    return json.dumps(doc).encode()
