"""Range, If-Range and file serving: the pure rules as tables, then send_file over HTTP.

The HTTP tests run a tiny app of their own, so they pin send_file itself, including the
aiohttp 3.14.5 cases that web.FileResponse gets wrong (bytes=-0, If-Range ETags, multi-range and unknown units).
"""

from __future__ import annotations

import gzip
import logging
import random
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from jobsvc.http import ranges
from jobsvc.http.middleware import error_middleware
from jobsvc.http.ranges import UNSATISFIABLE, RangeDecision

MiB = 1024 * 1024
N = 1000
DATA = bytes(i % 251 for i in range(N))
BIG = random.Random(9110).randbytes(3 * MiB)


def whole(size: int = N) -> RangeDecision:
    return RangeDecision.whole(size)


def part(start: int, end: int) -> RangeDecision:
    return RangeDecision.part(start, end)


# ---------------------------------------------------------------------------------------- parse_range

PARSE_CASES = [
    # RFC 9110 §14 on a 1000-byte file, with the cases aiohttp's FileResponse gets wrong.
    ("bytes=0-9", N, part(0, 9)),
    ("bytes=990-5000", N, part(990, 999)),
    ("bytes=1000-", N, UNSATISFIABLE),
    ("bytes=5-2", N, UNSATISFIABLE),
    ("bytes=-2000", N, part(0, 999)),
    ("bytes=-0", N, UNSATISFIABLE),
    ("bytes=0-1,5-6", N, whole()),
    ("items=0-9", N, whole()),
    # The three forms at their edges.
    (None, N, whole()),
    ("bytes=0-0", N, part(0, 0)),
    ("bytes=0-", N, part(0, 999)),
    ("bytes=0-999", N, part(0, 999)),
    ("bytes=500-", N, part(500, 999)),
    ("bytes=999-", N, part(999, 999)),
    ("bytes=999-999", N, part(999, 999)),
    ("bytes=999-1000", N, part(999, 999)),
    ("bytes=1000-1000", N, UNSATISFIABLE),
    ("bytes=5-5", N, part(5, 5)),
    ("bytes=-1", N, part(999, 999)),
    ("bytes=-1000", N, part(0, 999)),
    ("bytes=-00", N, UNSATISFIABLE),
    ("bytes=007-010", N, part(7, 10)),
    # An empty file has no byte to send.
    (None, 0, whole(0)),
    ("bytes=0-", 0, UNSATISFIABLE),
    ("bytes=0-0", 0, UNSATISFIABLE),
    ("bytes=-5", 0, UNSATISFIABLE),
    ("bytes=-0", 0, UNSATISFIABLE),
    ("bytes=0-1,2-3", 0, whole(0)),
    ("items=0-1", 0, whole(0)),
    # One byte.
    ("bytes=0-0", 1, part(0, 0)),
    ("bytes=0-", 1, part(0, 0)),
    ("bytes=-1", 1, part(0, 0)),
    ("bytes=-5", 1, part(0, 0)),
    ("bytes=1-", 1, UNSATISFIABLE),
    ("bytes=1-1", 1, UNSATISFIABLE),
    # Huge numbers, including more digits than int() converts by default (4300).
    ("bytes=0-99999999999999999999999", N, part(0, 999)),
    ("bytes=99999999999999999999999-", N, UNSATISFIABLE),
    ("bytes=-99999999999999999999999", N, part(0, 999)),
    ("bytes=0-" + "9" * 5000, N, part(0, 999)),
    ("bytes=" + "9" * 5000 + "-", N, UNSATISFIABLE),
    ("bytes=-" + "9" * 5000, N, part(0, 999)),
    ("bytes=" + "0" * 5000 + "5-9", N, part(5, 9)),
    ("bytes=" + "9" * 30 + "-" + "9" * 29, N, UNSATISFIABLE),
    ("bytes=5000000000000-5000000000009", 10**13, part(5 * 10**12, 5 * 10**12 + 9)),
    ("bytes=-10", 10**13, part(10**13 - 10, 10**13 - 1)),
    # Whitespace: around the value and list commas only; empty list elements are skipped.
    (" bytes=0-9 ", N, part(0, 9)),
    ("\tbytes=0-9\t", N, part(0, 9)),
    ("bytes= 0-9", N, part(0, 9)),
    ("bytes=0-9 ,\t", N, part(0, 9)),
    ("bytes=,0-9,,", N, part(0, 9)),
    ("bytes=0-1, 5-6", N, whole()),
    ("bytes=0 - 9", N, UNSATISFIABLE),
    ("bytes=0- 9", N, UNSATISFIABLE),
    ("bytes =0-9", N, whole()),
    # The unit is case-insensitive.
    ("Bytes=0-9", N, part(0, 9)),
    ("BYTES=-1", N, part(999, 999)),
    # Malformed byte ranges are rejected; headers with no byte unit are ignored.
    ("bytes=", N, UNSATISFIABLE),
    ("bytes=-", N, UNSATISFIABLE),
    ("bytes=,", N, UNSATISFIABLE),
    ("bytes=abc", N, UNSATISFIABLE),
    ("bytes=1-2-3", N, UNSATISFIABLE),
    ("bytes=-5-", N, UNSATISFIABLE),
    ("bytes=+1-2", N, UNSATISFIABLE),
    ("bytes=0x1-2", N, UNSATISFIABLE),
    ("bytes=1.5-2", N, UNSATISFIABLE),
    ("bytes=1e3-", N, UNSATISFIABLE),
    ("bytes=0-1,x", N, whole()),
    ("bytes=5-2,0-1", N, whole()),
    ("bytes=0-1,0-1", N, whole()),
    ("bytes", N, whole()),
    ("", N, whole()),
    ("garbage", N, whole()),
    ("=0-9", N, whole()),
    ("bytes0-9", N, whole()),
    # Only ASCII digits: Arabic-Indic, fullwidth and superscript digits are not numbers here.
    ("bytes=٠-٩", N, UNSATISFIABLE),
    ("bytes=0-٩", N, UNSATISFIABLE),
    ("bytes=-٩", N, UNSATISFIABLE),
    ("bytes=１-２", N, UNSATISFIABLE),
    ("bytes=²-3", N, UNSATISFIABLE),
]


@pytest.mark.parametrize(("header", "size", "expected"), PARSE_CASES)
def test_parse_range(header, size, expected):
    assert ranges.parse_range(header, size) == expected


SUFFIXES = ["bytes=-1", "bytes=-999", "bytes=-1000", "bytes=-1001", "bytes=-0", "bytes=-000", "bytes=-00012",
            "bytes=-" + "9" * 5000, "bytes=-", "BYTES=-5", " bytes=-5", "bytes=-5 ", "bytes=-٥"]  # fmt: skip


@pytest.mark.parametrize("size", [0, 1, N])
def test_the_plain_suffix_shortcut_answers_as_the_general_parse(monkeypatch, size):
    fast = [ranges.parse_range(header, size) for header in SUFFIXES]
    monkeypatch.setattr(ranges, "_PLAIN_SUFFIX", ranges.re.compile(r"(?!)"))  # never matches
    assert fast == [ranges.parse_range(header, size) for header in SUFFIXES]


def test_decision_end_is_inclusive():
    assert part(990, 999).end == 999
    assert part(990, 999).length == 10
    assert whole(1000).end == 999


def test_range_header_helpers():
    assert ranges.content_range(0, 9, 1000) == "bytes 0-9/1000"
    assert ranges.unsatisfied_range(1000) == "bytes */1000"
    assert ranges.unsatisfied_range(0) == "bytes */0"


def test_etag_is_strong_and_tracks_each_input():
    etag = ranges.make_etag(1000, 1_700_000_000_123_456_789, 42)
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    others = {
        ranges.make_etag(1001, 1_700_000_000_123_456_789, 42),
        ranges.make_etag(1000, 1_700_000_000_123_456_790, 42),
        ranges.make_etag(1000, 1_700_000_000_123_456_789, 43),
    }
    assert etag not in others and len(others) == 3


def test_http_date_rounds_down():
    assert ranges.http_date(784111777.999) == "Sun, 06 Nov 1994 08:49:37 GMT"


# ------------------------------------------------------------------------------------ if_range_allows

ETAG = '"2a-1f-3e8"'
MODIFIED = 784111777.5  # Sun, 06 Nov 1994 08:49:37.5 GMT

IF_RANGE_CASES = [
    (None, True),
    (ETAG, True),
    (f" {ETAG}\t", True),
    ('"2a-1f-3e9"', False),  # stale
    (f"W/{ETAG}", False),  # weak never matches
    (f"{ETAG}, {ETAG}", False),  # If-Range holds one validator, not a list
    ('"', False),
    ("*", False),
    ("Sun, 06 Nov 1994 08:49:37 GMT", True),  # Last-Modified as sent
    ("Sun, 06 Nov 1994 08:49:36 GMT", False),  # modified after that date
    ("Mon, 07 Nov 1994 08:49:37 GMT", True),
    ("Sunday, 06-Nov-94 08:49:37 GMT", True),  # RFC 850
    ("Sun Nov  6 08:49:37 1994", True),  # asctime
    ("Sun Nov  6 08:49:36 1994", False),
    ("Sun, 06 Nov 1994 10:49:37 +0200", True),  # not HTTP-date, but unambiguous
    ("yesterday", False),
    ("", False),
    ("Sun, 99 Nov 1994 08:49:37 GMT", False),
    ("Sun, 06 Nov 1994 25:49:37 GMT", False),
    ("1994-11-06T08:49:37Z", False),
]


@pytest.mark.parametrize(("if_range", "expected"), IF_RANGE_CASES)
def test_if_range_allows(if_range, expected):
    assert ranges.if_range_allows(if_range, ETAG, MODIFIED) is expected


def test_if_range_never_matches_a_weak_current_etag():
    assert ranges.if_range_allows('W/"x"', 'W/"x"', MODIFIED) is False


PLAN_CASES = [
    (None, ETAG, whole()),  # If-Range alone means nothing
    ("bytes=0-9", None, part(0, 9)),
    ("bytes=0-9", ETAG, part(0, 9)),
    ("bytes=0-9", '"stale"', whole()),
    ("bytes=-0", '"stale"', whole()),  # If-Range is evaluated before the range
    ("bytes=-0", ETAG, UNSATISFIABLE),
    ("bytes=0-1,5-6", ETAG, whole()),
    ("bytes=0-9", "Sun, 06 Nov 1994 08:49:36 GMT", whole()),
]


@pytest.mark.parametrize(("range_header", "if_range", "expected"), PLAN_CASES)
def test_plan_range(range_header, if_range, expected):
    assert ranges.plan_range(range_header, if_range, size=N, etag=ETAG, last_modified=MODIFIED) == expected


# ---------------------------------------------------------------------------------------- send_file

ROOT = web.AppKey("root", Path)


async def serve(request: web.Request) -> web.StreamResponse:
    try:
        return await ranges.send_file(
            request,
            request.app[ROOT] / request.match_info["name"],
            content_type="application/octet-stream",
            headers={"Content-Disposition": "attachment"},
            allow_ranges="plain" not in request.query,
        )
    except FileNotFoundError:
        raise web.HTTPNotFound() from None


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "file.bin").write_bytes(DATA)
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "folder.bin").mkdir()
    return tmp_path


@pytest.fixture
async def served(aiohttp_client, root: Path):
    app = web.Application()
    app[ROOT] = root
    app.router.add_get("/{name}", serve)
    return await aiohttp_client(app)


async def fetch(served, name: str = "file.bin", method: str = "GET", **headers: str):
    """Status, headers and body of one request; header names use _ for -."""
    resp = await served.request(method, f"/{name}", headers={k.replace("_", "-"): v for k, v in headers.items()})
    return resp.status, resp.headers, await resp.read()


async def test_full_body_and_headers(served):
    status, headers, body = await fetch(served)
    assert (status, body) == (200, DATA)
    assert headers["Content-Length"] == str(N)
    assert headers["Content-Type"] == "application/octet-stream"  # as given: no charset
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Disposition"] == "attachment"
    assert headers["ETag"].startswith('"')
    assert headers["Last-Modified"].endswith(" GMT")
    assert "Content-Range" not in headers
    assert "Content-Encoding" not in headers


async def test_small_range(served):
    status, headers, body = await fetch(served, Range="bytes=10-19")
    assert (status, body) == (206, DATA[10:20])
    assert headers["Content-Range"] == "bytes 10-19/1000"
    assert headers["Content-Length"] == "10"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == "attachment"


async def test_runner_probe_gets_one_byte(served):
    status, headers, body = await fetch(served, Range="bytes=0-0")
    assert (status, body, headers["Content-Range"]) == (206, DATA[:1], "bytes 0-0/1000")


async def test_suffix_longer_than_file_is_the_whole_file_as_206(served):
    status, headers, body = await fetch(served, Range="bytes=-2000")
    assert (status, body, headers["Content-Range"]) == (206, DATA, "bytes 0-999/1000")


@pytest.mark.parametrize(("header", "start"), [("bytes=1-", 1), (f"bytes=-{2 * MiB}", MiB), ("bytes=0-", 0)])
async def test_large_range_by_sendfile(served, root, header, start):
    (root / "big.bin").write_bytes(BIG)
    status, headers, body = await fetch(served, "big.bin", Range=header)
    assert status == 206
    assert body == BIG[start:]
    assert headers["Content-Range"] == f"bytes {start}-{len(BIG) - 1}/{len(BIG)}"
    assert headers["Content-Length"] == str(len(BIG) - start)


@pytest.mark.parametrize(("length", "preads"), [(1, 1), (ranges.SMALL_RANGE, 1), (ranges.SMALL_RANGE + 1, 0)])
async def test_pread_serves_small_ranges_only(served, root, monkeypatch, length, preads):
    (root / "big.bin").write_bytes(BIG)
    calls = []
    real_pread, real_preadv = ranges.os.pread, ranges.os.preadv
    monkeypatch.setattr(ranges.os, "pread", lambda *args: calls.append(args) or real_pread(*args))
    monkeypatch.setattr(ranges.os, "preadv", lambda *args: calls.append(args) or real_preadv(*args))
    status, headers, body = await fetch(served, "big.bin", Range=f"bytes=7-{6 + length}")
    assert (status, body, len(calls)) == (206, BIG[7 : 7 + length], preads)
    assert headers["Content-Length"] == str(length)


async def test_full_big_file(served, root):
    (root / "big.bin").write_bytes(BIG)
    status, headers, body = await fetch(served, "big.bin")
    assert (status, body, headers["Content-Length"]) == (200, BIG, str(len(BIG)))


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=-0", "bytes=5-2", "bytes=", "bytes=٠-٩"])
async def test_unsatisfiable(served, header):
    status, headers, body = await fetch(served, Range=header)
    assert (status, body) == (416, b"")
    assert headers["Content-Range"] == "bytes */1000"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Length"] == "0"
    assert "Content-Type" not in headers


async def test_empty_file(served):
    assert (await fetch(served, "empty.bin"))[::2] == (200, b"")
    status, headers, body = await fetch(served, "empty.bin", Range="bytes=0-0")
    assert (status, headers["Content-Range"], body) == (416, "bytes */0", b"")


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-9", "bytes", "bytes=0-1, 0-1"])
async def test_ignored_ranges_give_the_full_file(served, header):
    status, headers, body = await fetch(served, Range=header)
    assert (status, body) == (200, DATA)
    assert "Content-Range" not in headers


async def test_if_range_etag(served):
    etag = (await fetch(served, method="HEAD"))[1]["ETag"]
    assert (await fetch(served, Range="bytes=0-9", If_Range=etag))[::2] == (206, DATA[:10])
    assert (await fetch(served, Range="bytes=0-9", If_Range='"stale"'))[::2] == (200, DATA)
    assert (await fetch(served, Range="bytes=0-9", If_Range=f"W/{etag}"))[::2] == (200, DATA)


async def test_if_range_date(served):
    last_modified = (await fetch(served, method="HEAD"))[1]["Last-Modified"]
    assert (await fetch(served, Range="bytes=0-9", If_Range=last_modified))[::2] == (206, DATA[:10])
    old = "Sun, 06 Nov 1994 08:49:37 GMT"
    assert (await fetch(served, Range="bytes=0-9", If_Range=old))[::2] == (200, DATA)


async def test_etag_changes_when_the_file_is_replaced(served, root):
    before = (await fetch(served, method="HEAD"))[1]["ETag"]
    (root / "next.bin").write_bytes(DATA)
    (root / "next.bin").replace(root / "file.bin")
    status, headers, body = await fetch(served, Range="bytes=0-9", If_Range=before)
    assert (status, body) == (200, DATA)
    assert headers["ETag"] != before


@pytest.mark.parametrize("header", [None, "bytes=0-9", "bytes=-0"])
async def test_head_has_the_full_headers_and_no_body(served, header):
    extra = {"Range": header} if header else {}
    status, headers, body = await fetch(served, method="HEAD", **extra)
    assert (status, body) == (200, b"")  # Range is defined for GET only (RFC 9110 §14.2)
    assert headers["Content-Length"] == str(N)
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Type"] == "application/octet-stream"
    assert "Content-Range" not in headers
    get_headers = (await fetch(served))[1]
    assert headers["ETag"] == get_headers["ETag"]
    assert headers["Last-Modified"] == get_headers["Last-Modified"]


@pytest.mark.parametrize(
    ("suffix", "encoding", "sibling"), [(".gz", "gzip", gzip.compress(b"evil")), (".br", "br", b"x")], ids=["gz", "br"]
)
async def test_compressed_sibling_is_never_served(served, root, suffix, encoding, sibling):
    (root / f"file.bin{suffix}").write_bytes(sibling)
    for extra in ({}, {"Range": "bytes=0-9"}, {"Range": "bytes=-2000"}):
        status, headers, body = await fetch(served, Accept_Encoding=f"{encoding}, deflate", **extra)
        assert status in (200, 206)
        assert body == DATA[: int(headers["Content-Length"])]
        assert "Content-Encoding" not in headers
        assert "Vary" not in headers


@pytest.mark.parametrize("header", [None, "bytes=0-9", "bytes=-0", "bytes=0-1,5-6"])
async def test_allow_ranges_false_is_a_plain_200(served, header):
    extra = {"Range": header, "If_Range": '"stale"'} if header else {}
    status, headers, body = await fetch(served, "file.bin?plain=1", **extra)
    assert (status, body) == (200, DATA)
    assert "Accept-Ranges" not in headers
    assert "Content-Range" not in headers
    assert headers["Content-Length"] == str(N)


@pytest.mark.parametrize("name", ["missing.bin", "folder.bin"])
async def test_missing_or_not_a_file_raises_file_not_found(served, name):
    assert (await fetch(served, name))[0] == 404


async def test_truncated_during_pread_closes_the_connection(served, monkeypatch):
    """A file cut short after fstat gives a short body the client can detect, as with sendfile."""
    real_pread = ranges.os.pread
    monkeypatch.setattr(ranges.os, "pread", lambda fd, n, offset: real_pread(fd, n // 2, offset))
    monkeypatch.setattr(ranges.os, "preadv", not_cached)
    resp = await served.get("/file.bin", headers={"Range": "bytes=0-99"})
    assert resp.status == 206
    assert resp.headers["Content-Length"] == "100"
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


REAL_PREAD = ranges.os.pread


def not_cached(fd, buffers, offset, flags):
    """``os.preadv`` with RWF_NOWAIT on a range the page cache does not hold."""
    assert flags == ranges.os.RWF_NOWAIT
    raise BlockingIOError(ranges.errno.EAGAIN, "Resource temporarily unavailable")


def half_cached(fd, buffers, offset, flags):
    """``os.preadv`` with RWF_NOWAIT when only the first half of the range is in the page cache."""
    assert flags == ranges.os.RWF_NOWAIT
    (buffer,) = buffers
    data = REAL_PREAD(fd, len(buffer) // 2, offset)
    buffer[: len(data)] = data
    return len(data)


def no_thread(snapshot):
    raise AssertionError("a cached small range is read on the loop")


TAIL = 64 * 1024

# The small-range path against what the client must see, whatever the page cache holds: on the loop
# (cached), partly or wholly on a worker thread (not cached), and by sendfile past SMALL_RANGE.
TAIL_CASES = [
    # (Range, preadv, expected status, first byte, length)
    (f"bytes=-{TAIL}", None, 206, len(BIG) - TAIL, TAIL),
    (f"bytes=-{TAIL}", not_cached, 206, len(BIG) - TAIL, TAIL),
    (f"bytes=-{TAIL}", half_cached, 206, len(BIG) - TAIL, TAIL),
    (f"bytes=-{ranges.SMALL_RANGE}", None, 206, len(BIG) - ranges.SMALL_RANGE, ranges.SMALL_RANGE),
    (f"bytes=-{ranges.SMALL_RANGE + 1}", None, 206, len(BIG) - ranges.SMALL_RANGE - 1, ranges.SMALL_RANGE + 1),
    (f"bytes=-{ranges.SMALL_RANGE + 1}", not_cached, 206, len(BIG) - ranges.SMALL_RANGE - 1, ranges.SMALL_RANGE + 1),
    ("bytes=0-0", None, 206, 0, 1),
    (f"bytes={len(BIG) - 1}-", half_cached, 206, len(BIG) - 1, 1),
    (f"bytes={len(BIG)}-", None, 416, 0, 0),
    ("bytes=-0", not_cached, 416, 0, 0),
]


@pytest.mark.parametrize(("header", "preadv", "status", "first", "length"), TAIL_CASES)
async def test_small_tail_path(served, root, monkeypatch, header, preadv, status, first, length):
    (root / "big.bin").write_bytes(BIG)
    reference = (await fetch(served, "big.bin", method="HEAD"))[1]
    if preadv is None:
        monkeypatch.setattr(ranges, "_read_rest", no_thread)
    else:
        monkeypatch.setattr(ranges.os, "preadv", preadv)
    got, headers, body = await fetch(served, "big.bin", Range=header)
    assert got == status
    assert body == BIG[first : first + length]
    assert headers["Content-Length"] == str(length)
    assert headers["ETag"] == reference["ETag"]
    assert headers["Last-Modified"] == reference["Last-Modified"]
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Disposition"] == "attachment"
    if status == 206:
        assert headers["Content-Range"] == f"bytes {first}-{first + length - 1}/{len(BIG)}"
        assert headers["Content-Type"] == "application/octet-stream"
    else:
        assert headers["Content-Range"] == f"bytes */{len(BIG)}"
        assert "Content-Type" not in headers


@pytest.mark.parametrize("preadv", [None, not_cached], ids=["cached", "not-cached"])
async def test_small_tail_of_an_empty_log(served, monkeypatch, preadv):
    if preadv is not None:
        monkeypatch.setattr(ranges.os, "preadv", preadv)
    status, headers, body = await fetch(served, "empty.bin", Range=f"bytes=-{TAIL}")
    assert (status, headers["Content-Range"], body) == (416, "bytes */0", b"")
    status, headers, body = await fetch(served, "empty.bin")
    assert (status, headers["Content-Length"], body) == (200, "0", b"")


@pytest.mark.parametrize("preadv", [None, not_cached, half_cached], ids=["cached", "not-cached", "half-cached"])
async def test_a_log_that_grows_meanwhile_is_answered_as_fstat_saw_it(served, root, monkeypatch, preadv):
    """Bytes appended after the fstat are not sent: the answer is the file as its size, ETag and range say."""
    log = root / "live.log"
    log.write_bytes(DATA)
    real_plan = ranges.plan_range

    def plan_then_grow(*args, **kwargs):
        decision = real_plan(*args, **kwargs)
        with log.open("ab") as handle:  # a runner's append lands between the fstat and the read
            handle.write(b"more")
        return decision

    monkeypatch.setattr(ranges, "plan_range", plan_then_grow)
    if preadv is not None:
        monkeypatch.setattr(ranges.os, "preadv", preadv)
    status, headers, body = await fetch(served, "live.log", Range="bytes=-100")
    assert (status, body, headers["Content-Range"]) == (206, DATA[-100:], f"bytes {N - 100}-{N - 1}/{N}")
    assert headers["Content-Length"] == "100"
    monkeypatch.setattr(ranges, "plan_range", real_plan)
    status, headers, body = await fetch(served, "live.log", Range="bytes=-6")
    assert (status, body, headers["Content-Range"]) == (206, DATA[-2:] + b"more", f"bytes {N - 2}-{N + 3}/{N + 4}")


async def test_a_log_cut_short_after_a_partly_cached_read_closes_the_connection(served, monkeypatch):
    """The part not cached turns out to be past the end (the file shrank): a short body, as with sendfile."""
    monkeypatch.setattr(ranges.os, "preadv", half_cached)
    monkeypatch.setattr(ranges.os, "pread", lambda fd, n, offset: b"")
    resp = await served.get("/file.bin", headers={"Range": "bytes=0-99"})
    assert (resp.status, resp.headers["Content-Length"]) == (206, "100")
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


# ---------------------------------------------------------------------------------------- send_ranged


class HungUpBlob:
    """A blob read by ranges during whose first read the client's connection starts closing: as when the client
    hangs up while a slow store (S3) is answering, and its end-of-file is seen just before the first piece."""

    size, etag, last_modified = N, '"hung-up-1"', 1_700_000_000.0

    def __init__(self) -> None:
        self.request: web.Request | None = None
        self.closed = False

    async def read_range(self, start: int, end: int):
        try:
            assert self.request is not None and self.request.transport is not None
            self.request.transport.close()  # closing, not yet lost: connection_lost comes on the next turn
            yield DATA[start:end]
        finally:
            self.closed = True


async def test_a_client_gone_before_the_first_piece_is_no_server_error(aiohttp_client, caplog):
    """With S3 the first piece can take seconds; a client that hangs up meanwhile is not an error to log."""
    blob = HungUpBlob()

    async def handler(request: web.Request) -> web.StreamResponse:
        blob.request = request
        return await ranges.send_ranged(request, blob, content_type="text/plain")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/slow", handler)
    client = await aiohttp_client(app)
    with pytest.raises(aiohttp.ClientError):
        await (await client.get("/slow", headers={"Range": "bytes=-100"})).read()
    assert blob.closed
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
