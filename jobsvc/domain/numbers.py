"""The one parser for every integer a client sends: ASCII digits only, within the database's range.

Python's ``int()``, ``str.isdigit()`` and ``\\d`` all take non-ASCII digits ("²", "١٢"), and
``int()`` of a long enough digit string raises (or takes seconds). Grape's Integer is written
with ASCII digits, and SQLite's INTEGER is a signed 64-bit number, so:

* ``parse_int`` accepts an ``int`` (not a ``bool``) or a string of an optional sign and ASCII
  digits, with ASCII blanks around it; anything else raises ``NotAnInteger``;
* an integer outside ``INT64_MIN..INT64_MAX`` raises ``OutOfRange`` (with its sign), never
  calling ``int()`` on more digits than a 64-bit number can have; ``clamp=True`` answers the
  nearest bound instead.

What an out-of-range number means is the caller's choice: an id that no row can have finds
nothing (Rails' ``find`` answers RecordNotFound for it), a page number is clamped.
"""

from __future__ import annotations

import re

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_INTEGER = re.compile(r"([+-]?)0*([0-9]+)", re.ASCII)
_BLANKS = " \t\r\n\f\v"
_MAX_DIGITS = len(str(INT64_MAX))


class NotAnInteger(ValueError):
    """Not an integer as Grape reads one."""


class OutOfRange(ValueError):
    """An integer that a signed 64-bit column cannot hold; ``negative`` says on which side."""

    def __init__(self, negative: bool):
        super().__init__("below the 64-bit range" if negative else "past the 64-bit range")
        self.negative = negative


def is_integer(text: str) -> bool:
    """Whether ``text`` is written as an integer (of any size) in ASCII digits."""
    return _INTEGER.fullmatch(text.strip(_BLANKS)) is not None


def parse_int(value: object, *, clamp: bool = False) -> int:
    """``value`` as a signed 64-bit integer; see the module's docstring."""
    if isinstance(value, bool):
        raise NotAnInteger(value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        match = _INTEGER.fullmatch(value.strip(_BLANKS))
        if match is None:
            raise NotAnInteger(value)
        sign, digits = match.groups()
        if len(digits) > _MAX_DIGITS:
            return _outside(sign == "-", clamp)
        number = -int(digits) if sign == "-" else int(digits)
    else:
        raise NotAnInteger(value)
    if number < INT64_MIN or number > INT64_MAX:
        return _outside(number < 0, clamp)
    return number


def _outside(negative: bool, clamp: bool) -> int:
    if clamp:
        return INT64_MIN if negative else INT64_MAX
    raise OutOfRange(negative)


def parse_id(value: object) -> int | None:
    """A record id: None when it is an integer no row can have (outside 64 bits); NotAnInteger otherwise."""
    try:
        return parse_int(value)
    except OutOfRange:
        return None


def ascii_digits(text: str) -> bool:
    """``str.isdigit()`` for ASCII only: one or more of 0-9 and nothing else."""
    return text.isascii() and text.isdigit()
