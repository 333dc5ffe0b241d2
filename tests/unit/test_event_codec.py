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
    encode_events,
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
    (event,) = decode_event(encode_event(cmd, 123))
    assert (event.request_id, event.first_number, event.second_number) == (cmd.request_id, INT64_MAX, -1)
    assert event.result == INT64_MAX - 1
    assert event.produced_at_ms == 123


def test_unknown_extra_fields_are_ignored():
    doc = _doc(extra={"nested": True}, note="x")
    assert decode_event(orjson.dumps(doc))[0].result == 7


def test_upper_case_id_is_canonicalised():
    rid = str(uuid.uuid4())
    assert decode_event(orjson.dumps(_doc(request_id=rid.upper())))[0].request_id == rid


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
        (orjson.dumps(_doc(v=3)), "unsupported_version", "unsupported event version 3"),
        (orjson.dumps(_doc(v=2.0)), "unsupported_version", "unsupported event version 2.0"),
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
        assert [(e.partition, e.offset) for e in expected] == [(2, 17)] * len(expected)


def test_an_event_not_read_from_the_topic_has_no_position():
    (event,) = decode_event(orjson.dumps(_doc()))
    assert type(event) is SummationEvent and (event.partition, event.offset) == (-1, -1)


# -- v2: several summations in one record --------------------------------------------------------


def _item(**over):
    return {k: v for k, v in _doc(**over).items() if k not in ("v", "produced_at_ms")}


def _batch(*items, **over):
    doc = {"v": 2, "produced_at_ms": 1_700_000_000_001, "events": list(items) or [_item()]}
    doc.update(over)
    return doc


_ITEM_CASES = [
    {},
    {"request_id": str(uuid.uuid4()).upper()},
    {"request_id": str(uuid.uuid4()).replace("-", "")},
    {"request_id": 7},
    {"request_id": "not-a-uuid"},
    {"result": 8},
    {"first_number": 1.0},
    {"first_number": True, "second_number": 6, "result": 7},
    {"first_number": INT64_MAX + 1, "second_number": -INT64_MAX - 1, "result": 0},
    {"extra": [1, 2]},
]


def test_v2_round_trip_keeps_order_and_shares_the_record_position():
    cmds = [validate_add(str(uuid.uuid4()), n, INT64_MAX - n) for n in range(5)]
    events = decode_event(encode_events(cmds, 99), 3, 41)
    assert [(e.request_id, e.first_number, e.second_number, e.result) for e in events] == [
        (c.request_id, c.first_number, c.second_number, c.result) for c in cmds
    ]
    assert {(e.produced_at_ms, e.partition, e.offset) for e in events} == {(99, 3, 41)}
    assert all(type(e) is SummationEvent for e in events)


def test_v2_needs_a_summation():
    with pytest.raises(ValueError):
        encode_events([], 1)


def test_v2_ignores_unknown_fields_and_canonicalises_ids():
    rid = str(uuid.uuid4())
    doc = _batch(_item(request_id=rid.upper(), extra=[1]), _item(), note={"x": 1})
    events = decode_event(orjson.dumps(doc))
    assert [e.result for e in events] == [7, 7] and events[0].request_id == rid


@pytest.mark.parametrize(
    ("doc", "code", "reason"),
    [
        (_batch(events=[]), "wrong_type", "field events must be a non-empty array"),
        (_batch(events={"a": 1}), "wrong_type", "field events must be a non-empty array"),
        ({"v": 2, "produced_at_ms": 1}, "missing_field", "missing field events"),
        ({"v": 2, "events": [_item()]}, "missing_field", "missing field produced_at_ms"),
        (_batch(produced_at_ms="now"), "wrong_type", "field produced_at_ms must be an integer"),
        (_batch(_item(), 7), "not_an_object", "events[1] is not a JSON object"),
        (_batch(_item(), _item(result=8)), "wrong_result", "events[1]: result is not first_number + second_number"),
        (_batch(_item(request_id="nope")), "invalid_request_id", "events[0]: field request_id is not a UUID"),
        (_batch(_item(first_number=True)), "wrong_type", "events[0]: field first_number must be an integer"),
        (
            {"v": 2, "produced_at_ms": 1, "events": [{k: v for k, v in _item().items() if k != "second_number"}]},
            "missing_field",
            "events[0]: missing field second_number",
        ),
    ],
)
def test_v2_record_with_any_wrong_summation_is_invalid_whole(doc, code, reason):
    with pytest.raises(InvalidEvent) as caught:
        decode_event(_dumps(doc))
    assert (caught.value.code, caught.value.reason) == (InvalidReason(code), reason)


def test_v2_out_of_range_item_is_invalid():
    raw = _dumps(_batch(_item(first_number=INT64_MAX + 1, second_number=-1, result=INT64_MAX)))
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw)
    assert caught.value.reason == "events[0]: field first_number out of int64 range"


def test_v2_size_limit_is_the_whole_record():
    items = [_item(padding="x" * 1000) for _ in range(70)]
    with pytest.raises(InvalidEvent) as caught:
        decode_event(_dumps(_batch(*items)))
    assert caught.value.code is InvalidReason.TOO_LARGE


@pytest.mark.parametrize("item", [_item(**over) for over in _ITEM_CASES])
def test_v2_summation_rules_are_the_v1_event_rules(item):
    """Each summation of a v2 record is accepted, or refused with the same reason, as the same v1 event."""
    produced = 1_700_000_000_001
    v1 = {**item, "v": 1, "produced_at_ms": produced}
    try:
        (expected,) = check_event_doc(orjson.loads(_dumps(v1)), 0, 5)
    except InvalidEvent as exc:
        with pytest.raises(InvalidEvent) as caught:
            decode_event(_dumps(_batch(_item(), item)), 0, 5)
        assert (caught.value.code, caught.value.reason) == (exc.code, f"events[1]: {exc.reason}")
    else:
        _first, second = decode_event(_dumps(_batch(_item(), item)), 0, 5)
        assert second == expected


def _dumps(doc) -> bytes:
    # the stdlib writes ints beyond 64 bits that orjson refuses to encode
    return json.dumps(doc).encode()
