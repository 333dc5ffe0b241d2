import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sumflow.domain.summation import (
    INT64_MAX,
    INT64_MIN,
    InvalidRequest,
    SumOutOfRange,
    canonical_request_id,
    validate_add,
)

int64s = st.integers(min_value=INT64_MIN, max_value=INT64_MAX)


def test_canonical_id_is_lower_case_hyphenated():
    raw = "A0B1C2D3-E4F5-4789-8ABC-DEF012345678"
    assert canonical_request_id(raw) == raw.lower()


def test_canonical_id_accepts_hex_without_hyphens():
    u = uuid.uuid4()
    assert canonical_request_id(u.hex.upper()) == str(u)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not-a-uuid",
        "{12345678-1234-5678-1234-567812345678}",
        "urn:uuid:12345678-1234-5678-1234-567812345678",
        " 12345678-1234-5678-1234-567812345678",
        "12345678-1234-5678-1234-56781234567",
        "12345678-1234-5678-1234-5678123456789",
        "g2345678-1234-5678-1234-567812345678",
        "x" * 10_000,
    ],
)
def test_malformed_ids_are_invalid(bad):
    with pytest.raises(InvalidRequest):
        canonical_request_id(bad)


@given(int64s, int64s)
def test_validate_add_either_returns_exact_sum_or_out_of_range(a, b):
    rid = str(uuid.uuid4())
    if INT64_MIN <= a + b <= INT64_MAX:
        cmd = validate_add(rid, a, b)
        assert cmd.result == a + b
        assert (cmd.first_number, cmd.second_number) == (a, b)
    else:
        with pytest.raises(SumOutOfRange):
            validate_add(rid, a, b)


def test_extreme_sums_at_the_edges():
    rid = str(uuid.uuid4())
    assert validate_add(rid, INT64_MAX, 0).result == INT64_MAX
    assert validate_add(rid, INT64_MIN, 0).result == INT64_MIN
    assert validate_add(rid, INT64_MAX, INT64_MIN).result == -1
    with pytest.raises(SumOutOfRange):
        validate_add(rid, INT64_MAX, 1)
    with pytest.raises(SumOutOfRange):
        validate_add(rid, INT64_MIN, -1)


def test_operands_outside_int64_are_invalid():
    with pytest.raises(InvalidRequest):
        validate_add(str(uuid.uuid4()), INT64_MAX + 1, 0)
