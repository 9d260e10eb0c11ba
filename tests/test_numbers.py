"""The one integer parser (jobsvc.domain.numbers) and the parsers built on it: tables, then properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobsvc.domain import numbers
from jobsvc.domain.durations import MAX_SECONDS, DurationError, parse_duration
from jobsvc.domain.numbers import (
    INT64_MAX,
    INT64_MIN,
    NotAnInteger,
    OutOfRange,
    parse_id,
    parse_int,
)
from jobsvc.http import pagination

NOT_INTEGERS = [
    "", " ", "+", "-", "1.0", "1e3", "0x10", "1_000", "--1", "1-", "²", "١٢", "٥", "1²", "１２",  # fullwidth
    "\u00a012", "12\u2003", True, False, None, 1.0, [1], {"id": 1}, b"12",
]  # fmt: skip


@pytest.mark.parametrize("value", NOT_INTEGERS, ids=repr)
def test_not_integers(value) -> None:
    with pytest.raises(NotAnInteger):
        parse_int(value)
    with pytest.raises(NotAnInteger):
        parse_id(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0), ("12", 12), ("+12", 12), ("-12", -12), (" 12\t", 12), ("0012", 12), ("-0", 0),
        (str(INT64_MAX), INT64_MAX), (str(INT64_MIN), INT64_MIN), ("0" * 40 + "7", 7), (5, 5), (INT64_MAX, INT64_MAX),
    ],
)  # fmt: skip
def test_integers(value, expected) -> None:
    assert parse_int(value) == expected


@pytest.mark.parametrize(
    ("value", "negative"),
    [(str(INT64_MAX + 1), False), (str(INT64_MIN - 1), True), ("9" * 400, False), ("-" + "9" * 5000, True),
     (2**64, False), (-(2**70), True)],
)  # fmt: skip
def test_out_of_range(value, negative) -> None:
    with pytest.raises(OutOfRange) as raised:
        parse_int(value)
    assert raised.value.negative is negative
    assert parse_int(value, clamp=True) == (INT64_MIN if negative else INT64_MAX)
    assert parse_id(value) is None


@given(st.integers())
def test_any_python_integer_round_trips_or_is_out_of_range(number: int) -> None:
    text = str(number)
    if INT64_MIN <= number <= INT64_MAX:
        assert parse_int(text) == number == parse_int(number)
    else:
        assert parse_id(text) is None and parse_id(number) is None


@given(st.text(st.characters(categories=["Nd"]), min_size=1, max_size=6))
def test_only_ascii_digits_make_a_number(text: str) -> None:
    if all(ch in "0123456789" for ch in text):
        assert parse_int(text) == int(text)
    else:
        with pytest.raises(NotAnInteger):
            parse_int(text)
        assert not numbers.is_integer(text)


@pytest.mark.parametrize(
    ("cursor_id", "expected"),
    [("12", 12), (12, 12), ("١٢", None), ("²", None), (str(2**63), None), (2**70, None), ("-1", None), ([1], None)],
)
def test_cursor_ids(cursor_id, expected) -> None:
    import base64
    import json

    cursor = base64.urlsafe_b64encode(json.dumps({"id": cursor_id, "_kd": "n"}).encode()).decode()
    assert pagination.decode_cursor(cursor) == expected


def test_the_offset_of_a_huge_page_fits_sqlite() -> None:
    page = pagination.page_of(INT64_MAX, INT64_MAX)
    assert page.per_page == 100 and page.offset == INT64_MAX
    assert pagination.offset_limit_exceeded(INT64_MAX, 1)


@pytest.mark.parametrize(
    "text", ["300000 years", "9" * 400, "9" * 400 + " seconds", "1" + "0" * 300 + ".5 days", "²", "١٢ days", "٥h"]
)
def test_durations_refused(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1 week", 604800), ("3600", 3600), ("007", 7), ("never", None), ("0", None), ("7000 years", MAX_SECONDS)],
)
def test_durations_accepted(text: str, seconds: int | None) -> None:
    assert parse_duration(text) == seconds
