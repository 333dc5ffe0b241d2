"""The summation events on the Kafka topic: encoding and strict decoding. Pure, no I/O.

A record value is a UTF-8 JSON object in one of two versions (docs/events.md):
    v1, one summation (record key = its request id):
    {"v": 1, "request_id": "<uuid>", "first_number": int, "second_number": int,
     "result": int, "produced_at_ms": int}
    v2, one or more summations published together (record key = the first one's request id):
    {"v": 2, "produced_at_ms": int,
     "events": [{"request_id": "<uuid>", "first_number": int, "second_number": int, "result": int}, ...]}
Unknown extra fields are ignored (forward compatible). Anything else that is wrong makes the whole
record invalid (a v2 record is applied whole or not at all): it goes to the dead-letter topic with
its reason (a code and a text) and none of its summations is applied.

`SummationEvent` is the one shape of an event inside the accumulator: decoded from the topic (with
the partition and offset it was read at), applied by the ledger, written to the audit log and to the
ledger rows, and read back by the rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple

import orjson

from sumflow.domain.summation import (
    INT64_MAX,
    INT64_MIN,
    AddCommand,
    InvalidRequest,
    canonical_request_id,
    is_canonical_request_id,
)

EVENT_VERSION = 1  # one summation per record
BATCH_VERSION = 2  # several summations per record
MAX_EVENT_BYTES = 64 * 1024  # the largest record value of either version
NOT_CONSUMED = -1  # partition and offset of an event that was not read from the topic


class InvalidReason(StrEnum):
    """Why a record is not an event; the value is the DLQ metric's `reason` label."""

    EMPTY = "empty"
    TOO_LARGE = "too_large"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_VERSION = "unsupported_version"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_REQUEST_ID = "invalid_request_id"
    OUT_OF_RANGE = "out_of_range"
    WRONG_RESULT = "wrong_result"


class InvalidEvent(ValueError):
    """A record that cannot be applied: `code` for metrics, `reason` (the message) for the DLQ header."""

    def __init__(self, code: InvalidReason, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class SummationEvent(NamedTuple):
    """One summation and where it was consumed (a tuple: the hot path builds it without Python code)."""

    request_id: str  # canonical: lower-case, hyphenated UUID
    first_number: int
    second_number: int
    result: int
    produced_at_ms: int
    partition: int = NOT_CONSUMED
    offset: int = NOT_CONSUMED


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


def encode_events(cmds: Sequence[AddCommand], produced_at_ms: int) -> bytes:
    """One v2 record value for `cmds` (at least one), in their order."""
    if not cmds:
        raise ValueError("a v2 record holds at least one summation")
    return orjson.dumps(
        {
            "v": BATCH_VERSION,
            "produced_at_ms": produced_at_ms,
            "events": [
                {
                    "request_id": cmd.request_id,
                    "first_number": cmd.first_number,
                    "second_number": cmd.second_number,
                    "result": cmd.result,
                }
                for cmd in cmds
            ],
        }
    )


_new = tuple.__new__


def decode_event(
    raw: bytes | None, partition: int = NOT_CONSUMED, offset: int = NOT_CONSUMED
) -> tuple[SummationEvent, ...]:
    """Parse and validate one record value of either version: its summations in order, or raise
    InvalidEvent with the code and reason (for the whole record).

    The consumer's hot path: a v1 event whose id is already canonical and whose fields are all plain
    ints in range is accepted without further work; anything else goes through `check_event_doc`,
    which accepts the same events and names the reason for the others.
    """
    if raw is None:
        raise InvalidEvent(InvalidReason.EMPTY, "empty record value")
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(InvalidReason.TOO_LARGE, "record value too large")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidEvent(InvalidReason.INVALID_JSON, "value is not valid JSON") from None
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
            return (_new(SummationEvent, (rid, first, second, result, produced, partition, offset)),)
    return check_event_doc(doc, partition, offset)


def _int_field(doc: dict[str, object], name: str, where: str = "") -> int:
    if name not in doc:
        raise InvalidEvent(InvalidReason.MISSING_FIELD, f"{where}missing field {name}")
    value = doc[name]
    if type(value) is not int:  # bool is an int subclass: refuse it too
        raise InvalidEvent(InvalidReason.WRONG_TYPE, f"{where}field {name} must be an integer")
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidEvent(InvalidReason.OUT_OF_RANGE, f"{where}field {name} out of int64 range")
    return value


def _summation(
    doc: dict[str, object], produced_at_ms: int | None, partition: int, offset: int, where: str = ""
) -> SummationEvent:
    """One summation's fields, checked one by one (`produced_at_ms` None: read from `doc`, as in v1)."""
    request_id = doc.get("request_id")
    if request_id is None:
        raise InvalidEvent(InvalidReason.MISSING_FIELD, f"{where}missing field request_id")
    if not isinstance(request_id, str):
        raise InvalidEvent(InvalidReason.WRONG_TYPE, f"{where}field request_id must be a string")
    try:
        request_id = canonical_request_id(request_id)
    except InvalidRequest:
        raise InvalidEvent(InvalidReason.INVALID_REQUEST_ID, f"{where}field request_id is not a UUID") from None
    first = _int_field(doc, "first_number", where)
    second = _int_field(doc, "second_number", where)
    result = _int_field(doc, "result", where)
    if produced_at_ms is None:
        produced_at_ms = _int_field(doc, "produced_at_ms", where)
    if first + second != result:
        raise InvalidEvent(InvalidReason.WRONG_RESULT, f"{where}result is not first_number + second_number")
    return SummationEvent(request_id, first, second, result, produced_at_ms, partition, offset)


def _batch(doc: dict[str, object], partition: int, offset: int) -> tuple[SummationEvent, ...]:
    """A v2 record's summations, all valid, or InvalidEvent naming the first wrong one."""
    produced_at_ms = _int_field(doc, "produced_at_ms")
    if "events" not in doc:
        raise InvalidEvent(InvalidReason.MISSING_FIELD, "missing field events")
    items = doc["events"]
    if type(items) is not list or not items:
        raise InvalidEvent(InvalidReason.WRONG_TYPE, "field events must be a non-empty array")
    events = []
    for index, item in enumerate(items):
        if type(item) is not dict:
            raise InvalidEvent(InvalidReason.NOT_AN_OBJECT, f"events[{index}] is not a JSON object")
        rid = item.get("request_id")
        first = item.get("first_number")
        second = item.get("second_number")
        result = item.get("result")
        if (  # the common case, as in decode_event; anything else is checked field by field
            type(rid) is str
            and type(first) is int
            and type(second) is int
            and type(result) is int
            and INT64_MIN <= first <= INT64_MAX
            and INT64_MIN <= second <= INT64_MAX
            and INT64_MIN <= result <= INT64_MAX
            and first + second == result
            and is_canonical_request_id(rid) is not None
        ):
            events.append(_new(SummationEvent, (rid, first, second, result, produced_at_ms, partition, offset)))
        else:
            events.append(_summation(item, produced_at_ms, partition, offset, f"events[{index}]: "))
    return tuple(events)


def check_event_doc(
    doc: object, partition: int = NOT_CONSUMED, offset: int = NOT_CONSUMED
) -> tuple[SummationEvent, ...]:
    """Validate a parsed record value field by field (decode_event's slow path): its summations or the reason."""
    if not isinstance(doc, dict):
        raise InvalidEvent(InvalidReason.NOT_AN_OBJECT, "value is not a JSON object")
    version = doc.get("v", EVENT_VERSION)
    if version == BATCH_VERSION and type(version) is int:
        return _batch(doc, partition, offset)
    if version != EVENT_VERSION:
        raise InvalidEvent(InvalidReason.UNSUPPORTED_VERSION, f"unsupported event version {version!r}")
    return (_summation(doc, None, partition, offset),)
