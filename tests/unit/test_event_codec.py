import uuid

import orjson
import pytest

from sumflow.domain.events import InvalidEvent, decode_event, encode_event
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
