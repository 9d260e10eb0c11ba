"""Pagination: GitLab's offset headers and keyset cursors, as pure functions.

Offset (Kaminari as GitLab configures it): ``per_page`` capped at 100, a
negative one taken as the default (0 is refused earlier, by the schema),
``page`` below 1 taken as 1. Headers are
``X-Per-Page``, ``X-Page``, ``X-Next-Page``, ``X-Prev-Page`` (empty strings
when there is none) and ``Link``; ``X-Total``/``X-Total-Pages`` and
``rel="last"`` only when a count is known, which is never above 10,000 rows.

Keyset: ``pagination=keyset`` answers a ``Link: <...cursor=...>; rel="next"``
while more rows exist, and no Link on the last page.

Link URLs are absolute and keep the request's path exactly as the client sent
it (still percent-encoded: a project addressed as ``group%2Fname`` stays so, as
GitLab builds the link from the raw request URL and changes only the query),
and its own query, percent-encoded so that no raw comma appears in them.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from jobsvc.domain.numbers import INT64_MAX, NotAnInteger, OutOfRange, parse_int

MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 20
MAX_COUNT = 10_000
MAX_OFFSET = 50_000

OFFSET_LIMIT_MESSAGE = (
    "Offset pagination has a maximum allowed offset of 50000 for requests that return objects "
    "of type Ci::Build. Remaining records can be retrieved using keyset pagination."
)
KEYSET_UNSUPPORTED_MESSAGE = "Keyset pagination is not yet available for this type of request"


@dataclass(frozen=True)
class PageRequest:
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        """Capped at what SQLite's OFFSET takes: a page that far out is empty either way."""
        return min((self.page - 1) * self.per_page, INT64_MAX)


def page_of(page: int, per_page: int) -> PageRequest:
    """Kaminari's clamping of the requested numbers."""
    if per_page < 0:
        per_page = DEFAULT_PER_PAGE
    return PageRequest(max(page, 1), min(per_page, MAX_PER_PAGE))


def offset_limit_exceeded(page: int, per_page: int) -> bool:
    """GitLab compares the numbers as requested, before Kaminari caps ``per_page``."""
    return page * per_page > MAX_OFFSET


def _encode(value: str) -> str:
    return quote(value, safe="")


# RFC 3986 pchar and "/", less the comma (Link headers are comma-separated), plus "%" of valid escapes
_PATH_SAFE = re.compile(r"%[0-9A-Fa-f]{2}|[A-Za-z0-9\-._~!$&'()*+;=:@/]")
_PATH_CHUNK = re.compile(r"%[0-9A-Fa-f]{2}|.", re.DOTALL)


def link_path(raw_path: str) -> str:
    """The request's path as the client sent it, safe inside ``<...>`` of a Link header.

    Escapes the client used (``%2F``, ``%2E``) are kept as they are; a character
    that may not appear raw in a URL (a space, ``<``, ``>``, a comma, a stray
    ``%``, anything non-ASCII) is percent-encoded as UTF-8.
    """
    return "".join(
        chunk if _PATH_SAFE.fullmatch(chunk) else quote(chunk, safe="") for chunk in _PATH_CHUNK.findall(raw_path)
    )


def page_url(base: str, path: str, query: Iterable[tuple[str, str]], replace: dict[str, str]) -> str:
    """``base + path`` with the request's query, ``replace`` taking the place of its keys.

    Keys are sorted (stably, so ``scope[]`` values keep their order) as Rails'
    ``to_query`` does; every key and value is percent-encoded.
    """
    kept = [(k, v) for k, v in query if k not in replace]
    pairs = sorted([*kept, *replace.items()], key=lambda pair: pair[0])
    encoded = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs)
    return f"{base}{path}?{encoded}"


def offset_headers(
    base: str,
    path: str,
    query: Iterable[tuple[str, str]],
    page: PageRequest,
    *,
    has_next: bool,
    out_of_range: bool,
    total: int | None,
) -> dict[str, str]:
    """X-* headers and Link for one offset page; ``total`` None means counts are omitted."""
    query = list(query)
    per = str(page.per_page)
    next_page = page.page + 1 if has_next else None
    prev_page = page.page - 1 if page.page > 1 and not out_of_range else None

    def link(number: int) -> str:
        return page_url(base, path, query, {"page": str(number), "per_page": per})

    links = []
    if prev_page is not None:
        links.append(f'<{link(prev_page)}>; rel="prev"')
    if next_page is not None:
        links.append(f'<{link(next_page)}>; rel="next"')
    links.append(f'<{link(1)}>; rel="first"')
    headers = {
        "X-Per-Page": per,
        "X-Page": str(page.page),
        "X-Next-Page": str(next_page) if next_page is not None else "",
        "X-Prev-Page": str(prev_page) if prev_page is not None else "",
    }
    if total is not None:
        total_pages = total_pages_of(total, page.per_page)
        links.append(f'<{link(total_pages)}>; rel="last"')
        headers["X-Total"] = str(total)
        headers["X-Total-Pages"] = str(total_pages)
    headers["Link"] = ", ".join(links)
    return headers


def total_pages_of(total: int, per_page: int) -> int:
    if per_page <= 0:
        return 1
    return max(1, math.ceil(total / per_page))


def encode_cursor(last_id: int) -> str:
    """GitLab's shape: urlsafe base64 of ``{"id":"123","_kd":"n"}``."""
    raw = json.dumps({"id": str(last_id), "_kd": "n"}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> int | None:
    """The id a cursor continues after, or None if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor.rstrip("=") + "=" * (-len(cursor.rstrip("=")) % 4))
        data = json.loads(raw)
        value = parse_int(data["id"])  # ASCII digits within 64 bits: a larger id is no cursor we issued
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError, NotAnInteger, OutOfRange):
        return None
    return value if value > 0 else None


def keyset_headers(
    base: str, path: str, query: Iterable[tuple[str, str]], per_page: int, next_after: int | None
) -> dict[str, str]:
    """``Link: <...>; rel="next"`` while more rows exist; nothing on the last page."""
    headers = {"X-Per-Page": str(per_page)}
    if next_after is not None:
        url = page_url(base, path, query, {"cursor": encode_cursor(next_after), "per_page": str(per_page)})
        headers["Link"] = f'<{url}>; rel="next"'
    return headers
