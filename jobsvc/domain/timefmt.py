"""Timestamps in GitLab's API formats.

Stored and served as text: UTC with milliseconds and ``Z`` for everything the
database owns ("2015-12-24T15:51:21.802Z"), and the committer's own offset for
commit dates ("2015-12-24T16:51:14.000+01:00").
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_utc(moment: datetime) -> str:
    """2015-12-24T15:51:21.802Z"""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_with_offset(moment: datetime) -> str:
    """2015-12-24T16:51:14.000+01:00 (UTC as +00:00 too, as Rails renders a zone)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}{sign}{hours:02d}:{mins:02d}"


def now_iso() -> str:
    return format_utc(utcnow())


def parse(text: str) -> datetime:
    """An ISO-8601 timestamp with ``Z`` or an offset (a naive one is taken as UTC)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def seconds_between(start: str | None, end: str | None, now: datetime) -> float | None:
    """GitLab's duration: (end or now) - start, in seconds; None when never started."""
    if start is None:
        return None
    finish = parse(end) if end is not None else now
    return round((finish - parse(start)).total_seconds(), 3)


def today() -> date:
    return utcnow().date()
