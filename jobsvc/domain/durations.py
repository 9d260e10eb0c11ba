"""``expire_in`` durations as GitLab reads them (ChronicDuration): "1 week", "30 mins", "2h 30m", "never".

Numbers are ASCII digits ("²" or "١٢" is no duration). A duration past ``MAX_SECONDS`` (7000 years,
so that now plus it is still a date we can store and print) is refused as invalid rather than
taken to mean "never": the client asked for something else, and GitLab could not store it either.
"""

from __future__ import annotations

import re

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "wk": 604800, "wks": 604800, "week": 604800, "weeks": 604800,
    "mo": 2592000, "mos": 2592000, "month": 2592000, "months": 2592000,
    "y": 31557600, "yr": 31557600, "yrs": 31557600, "year": 31557600, "years": 31557600,
}  # fmt: skip
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)", re.ASCII)
NEVER = "never"
MAX_SECONDS = 7000 * _UNITS["year"]


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> int | None:
    """Seconds, or None for "never" (and for "0", which GitLab treats as no expiry)."""
    value = text.strip().lower()
    if value in (NEVER, "0", ""):
        return None
    if value.isascii() and value.isdigit():
        digits = value.lstrip("0") or "0"  # no int() of a 400-digit string: it is too long at any rate
        return _bounded(int(digits) if len(digits) <= len(str(MAX_SECONDS)) else MAX_SECONDS + 1) or None
    value = value.replace(",", " ").replace(" and ", " ")
    total, position = 0.0, 0
    for match in _PART.finditer(value):
        if value[position : match.start()].strip():
            raise DurationError(text)
        number, unit = match.groups()
        if unit not in _UNITS:
            raise DurationError(text)
        total += float(number) * _UNITS[unit]
        position = match.end()
    if position == 0 or value[position:].strip():
        raise DurationError(text)
    return _bounded(total) or None


def _bounded(seconds: float) -> int:
    """Whole seconds (``total`` may be a float, even infinity for "1e400"-sized numbers), at most MAX_SECONDS."""
    if seconds > MAX_SECONDS:
        raise DurationError(f"{seconds} seconds is too long")
    return int(seconds)
