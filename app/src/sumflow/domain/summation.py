"""Validation of AddNumbers requests: pure functions, no I/O."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

# Already canonical (what the adder writes): accepted without building a uuid.UUID (hot path).
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# True-ish when the text already is the canonical lower-case hyphenated form (no parsing needed).
is_canonical_request_id = _CANONICAL.fullmatch

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_UUID_CHARS = frozenset("0123456789abcdefABCDEF-")


class InvalidRequest(ValueError):
    """The client sent something that can never succeed (gRPC INVALID_ARGUMENT)."""


class SumOutOfRange(ValueError):
    """The sum does not fit in int64 (gRPC OUT_OF_RANGE)."""


@dataclass(frozen=True, slots=True)
class AddCommand:
    """A validated request: canonical id and two int64 operands whose sum fits in int64."""

    request_id: str
    first_number: int
    second_number: int

    @property
    def result(self) -> int:
        return self.first_number + self.second_number


def canonical_request_id(raw: str) -> str:
    """Return the canonical lower-case hyphenated form of a UUID, or raise InvalidRequest.

    Accepts any case and the forms `uuid.UUID` accepts when written as 32 hex digits with or
    without hyphens; braces and `urn:uuid:` prefixes are refused so ids stay unambiguous.
    """
    if is_canonical_request_id(raw):
        return raw
    if not raw:
        raise InvalidRequest("request_id is required")
    if len(raw) > 36:
        raise InvalidRequest("request_id must be a UUID")
    # ASCII hex digits and hyphens only: uuid.UUID goes through int(), which would also take "_",
    # "+" and non-ASCII digits ("٣" * 32), aliasing distinct ids onto one canonical id
    if not set(raw) <= _UUID_CHARS:
        raise InvalidRequest("request_id must be a UUID")
    text = raw
    try:
        parsed = uuid.UUID(hex=text)
    except ValueError:
        raise InvalidRequest("request_id must be a UUID") from None
    return str(parsed)


def check_int64(name: str, value: int) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidRequest(f"{name} must fit in int64")


def validate_add(request_id: str, first_number: int, second_number: int) -> AddCommand:
    """Validate one AddNumbers call and return the command to execute."""
    canonical = canonical_request_id(request_id)
    check_int64("first_number", first_number)
    check_int64("second_number", second_number)
    total = first_number + second_number
    if not INT64_MIN <= total <= INT64_MAX:
        raise SumOutOfRange(f"{first_number} + {second_number} does not fit in int64")
    return AddCommand(canonical, first_number, second_number)
