"""The summation event on the Kafka topic: encoding and strict decoding. Pure, no I/O.

Wire format (UTF-8 JSON object, record key = request id):
    {"v": 1, "request_id": "<uuid>", "first_number": int, "second_number": int,
     "result": int, "produced_at_ms": int}
Unknown extra fields are ignored (forward compatible). Anything else that is wrong makes the
event invalid: it goes to the dead-letter topic with the reason and is never applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from sumflow.domain.summation import (
    INT64_MAX,
    INT64_MIN,
    AddCommand,
    InvalidRequest,
    canonical_request_id,
    is_canonical_request_id,
)

EVENT_VERSION = 1
MAX_EVENT_BYTES = 64 * 1024


class InvalidEvent(ValueError):
    """A record that cannot be applied; the message is the reason sent with it to the DLQ."""


@dataclass(frozen=True, slots=True)
class SummationEvent:
    request_id: str
    first_number: int
    second_number: int
    result: int
    produced_at_ms: int


def encode_event(cmd: AddCommand, produced_at_ms: int) -> bytes:
    return orjson.dumps(
        {
            "v": EVENT_VERSION,
            "request_id": cmd.request_id,
            "first_number": cmd.first_number,
            "second_number": cmd.second_number,
            "result": cmd.result,
            "produced_at_ms": produced_at_ms,
        }
    )


def _int_field(doc: dict[str, object], name: str) -> int:
    if name not in doc:
        raise InvalidEvent(f"missing field {name}")
    value = doc[name]
    if type(value) is not int:  # bool is an int subclass: refuse it too
        raise InvalidEvent(f"field {name} must be an integer")
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidEvent(f"field {name} out of int64 range")
    return value


EventFields = tuple[str, int, int, int, int]  # request_id, first, second, result, produced_at_ms


def decode_fields(raw: bytes | None) -> EventFields:
    """decode_event as a plain tuple: the consumer's hot path (no object per event).

    The fast path accepts exactly what decode_event accepts when the id is already canonical and
    every field is a plain int; anything else goes through decode_event for the reason.
    """
    if raw is not None and len(raw) <= MAX_EVENT_BYTES:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidEvent("value is not valid JSON") from None
        if type(doc) is dict:
            rid = doc.get("request_id")
            first = doc.get("first_number")
            second = doc.get("second_number")
            result = doc.get("result")
            produced = doc.get("produced_at_ms")
            if (
                type(rid) is str
                and type(first) is int
                and type(second) is int
                and type(result) is int
                and type(produced) is int
                and doc.get("v", EVENT_VERSION) == EVENT_VERSION
                and INT64_MIN <= first <= INT64_MAX
                and INT64_MIN <= second <= INT64_MAX
                and INT64_MIN <= result <= INT64_MAX
                and INT64_MIN <= produced <= INT64_MAX
                and first + second == result
                and is_canonical_request_id(rid) is not None
            ):
                return (rid, first, second, result, produced)
    ev = decode_event(raw)
    return (ev.request_id, ev.first_number, ev.second_number, ev.result, ev.produced_at_ms)


def decode_event(raw: bytes | None) -> SummationEvent:
    """Parse and validate one record value, or raise InvalidEvent with a short reason."""
    if raw is None:
        raise InvalidEvent("empty record value")
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent("record value too large")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidEvent("value is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidEvent("value is not a JSON object")
    version = doc.get("v", EVENT_VERSION)
    if version != EVENT_VERSION:
        raise InvalidEvent(f"unsupported event version {version!r}")
    request_id = doc.get("request_id")
    if not isinstance(request_id, str):
        raise InvalidEvent("missing field request_id" if request_id is None else "field request_id must be a string")
    try:
        request_id = canonical_request_id(request_id)
    except InvalidRequest:
        raise InvalidEvent("field request_id is not a UUID") from None
    first = _int_field(doc, "first_number")
    second = _int_field(doc, "second_number")
    result = _int_field(doc, "result")
    produced_at_ms = _int_field(doc, "produced_at_ms")
    if first + second != result:
        raise InvalidEvent("result is not first_number + second_number")
    return SummationEvent(request_id, first, second, result, produced_at_ms)
