"""One file out of an artifact zip: path validation, headers, the central-directory index, streaming."""

import asyncio
import io
import itertools
import os
import random
import struct
import threading
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import ClientPayloadError, web
from aiohttp.test_utils import make_mocked_request

from jobsvc.http import zipstream
from jobsvc.http.zipstream import (
    InvalidEntryPath,
    content_disposition,
    content_type_for,
    validate_entry_path,
)
from jobsvc.storage import zipindex
from jobsvc.storage.zipindex import (
    CHUNK,
    MIB,
    ArchiveError,
    ArchiveLimitError,
    IndexCache,
)

HELLO = b"hello world\n"
BIN = random.Random(7).randbytes(300_000)
LOG = b"".join(b"%08d the quick brown fox jumps over the lazy dog\n" % i for i in range(40_000))  # ~2 MiB
ZEROS = 48 * MIB  # deflates to ~50 KB: the zip-bomb shape, and too big to sit in socket buffers
CSP = "default-src 'none'; sandbox"


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info


def make_zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_archive(tmp_path_factory.mktemp("zips") / "artifacts.zip")


def write_archive(path: Path) -> Path:
    """Every kind of member the downloads must handle: stored, deflated, nested, odd names, a directory."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the duplicated name is deliberate
        zf.writestr("hello.txt", HELLO)
        zf.writestr("out/hello.txt", b"nested\n")
        zf.writestr("data.bin", BIN, compress_type=zipfile.ZIP_STORED)
        zf.mkdir("dir")
        zf.writestr(symlink("link"), b"../../../etc/passwd")
        zf.writestr("../evil", b"evil\n")
        zf.writestr('line\r\nbreak".txt', b"crlf\n")
        zf.writestr("résumé.pdf", b"%PDF-1.4\n")
        zf.writestr("%ff.txt", b"a literal percent sign\n")
        zf.writestr("dup.txt", b"first\n")
        zf.writestr("dup.txt", b"second\n")
        zf.writestr("logs/build.log", LOG)
    return path


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("zips") / "big.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", HELLO)
        zf.writestr("zeros.bin", bytes(ZEROS), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("zeros.stored", bytes(32 * MIB))
    return path


def entry_app(archive: Path, cache: IndexCache | None = None) -> web.Application:
    """What the artifact routes do: validate, look up, stream (GitLab's status codes for the rest)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            name = zipstream.request_entry_path(request, "path")
        except InvalidEntryPath:
            return web.json_response({"message": "400 Bad request"}, status=400)
        try:
            entry = await zipindex.find_entry(archive, name, cache=cache)
            if entry is None:
                return web.Response(status=404, text="404 page not found\n")
            return await zipstream.stream_entry(request, archive, entry, headers={"Cache-Control": "private"})
        except ArchiveError:
            return web.Response(status=500)

    app = web.Application()
    app.router.add_get(r"/f/{path:[\s\S]*}", handler)  # "." would not match a name holding a line break
    return app


@pytest.fixture
def serve(aiohttp_client):
    async def start(archive: Path, **server_kwargs):
        return await aiohttp_client(entry_app(archive), server_kwargs=server_kwargs)

    return start


def producers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "zipstream-producer"]


def open_descriptors(path: Path) -> list[str]:
    """This process's descriptors open on ``path``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                found.append(fd)
        except OSError:
            continue
    return found


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def central_records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, name) of each central directory record of a small zip."""
    end = data.rfind(b"PK\x05\x06")
    (count,) = struct.unpack_from("<H", data, end + 10)
    (pos,) = struct.unpack_from("<L", data, end + 16)
    for _ in range(count):
        name_len, extra_len, comment_len = struct.unpack_from("<3H", data, pos + 28)
        yield pos, data[pos + 46 : pos + 46 + name_len]
        pos += 46 + name_len + extra_len + comment_len


_CENTRAL_FIELDS = {"flags": (8, "<H"), "method": (10, "<H"), "crc": (16, "<L"), "compress_size": (20, "<L")}
_CENTRAL_FIELDS["file_size"] = (24, "<L")


def patch_central(path: Path, name: bytes, **fields: int) -> None:
    data = bytearray(path.read_bytes())
    pos = next(pos for pos, found in central_records(bytes(data)) if found == name)
    for field, value in fields.items():
        offset, fmt = _CENTRAL_FIELDS[field]
        struct.pack_into(fmt, data, pos + offset, value)
    path.write_bytes(data)


# --- the requested path ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["out/hello.txt", "../x", "./x", "/abs", "a\\b", "dir/", "%ff", "\ufffd", "résumé"])
def test_valid_paths_are_returned_unchanged(path):
    assert validate_entry_path(path) == path


@pytest.mark.parametrize("path", ["a\x00b", "\x00", "bad\udcff", "\ud800"])
def test_nul_and_invalid_utf8_are_refused(path):
    with pytest.raises(InvalidEntryPath):
        validate_entry_path(path)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("%ff", 400),  # aiohttp hands this over as the text "%ff"
        ("a%C3", 400),  # a truncated sequence
        ("%ED%A0%80", 400),  # an encoded surrogate
        ("%C0%AF", 400),  # an overlong "/"
        ("x%00", 400),
        ("%25ff.txt", 200),  # a literal "%ff.txt" is a fine name
        ("%EF%BF%BD", 404),  # U+FFFD is valid UTF-8: looked up, not found
    ],
)
async def test_invalid_utf8_in_the_url_is_400(serve, archive, raw, status):
    client = await serve(archive)
    resp = await client.get(f"/f/{raw}")
    assert resp.status == status
    if status == 400:
        assert await resp.json() == {"message": "400 Bad request"}


# --- Content-Type ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hello.txt", "text/plain; charset=utf-8"),  # not in Go's builtin table; the system table has it
        ("README.TXT", "text/plain; charset=utf-8"),
        (".txt", "text/plain; charset=utf-8"),
        ("a\\b.txt", "text/plain; charset=utf-8"),  # a backslash is not a separator
        ("index.html", "text/html; charset=utf-8"),
        ("page.htm", "text/html; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),  # Go's builtin wins over application/javascript
        ("module.mjs", "text/javascript; charset=utf-8"),
        ("feed.xml", "text/xml; charset=utf-8"),
        ("data.json", "application/json"),
        ("logo.svg", "image/svg+xml"),
        ("a.png", "image/png"),
        ("a.gif", "image/gif"),
        ("a.jpg", "image/jpeg"),
        ("a.JPEG", "image/jpeg"),
        ("a.webp", "image/webp"),
        ("a.avif", "image/avif"),
        ("favicon.ico", "image/x-icon"),
        ("report.pdf", "application/pdf"),
        ("résumé.pdf", "application/pdf"),
        ("m.wasm", "application/wasm"),
        ("results.csv", "text/csv; charset=utf-8"),
        ("artifacts.zip", "application/zip"),
        ("out/bundle.tar", "application/x-tar"),
        ("Makefile", "application/octet-stream"),
        ("dir/", "application/octet-stream"),
        ("v1.2/README", "application/octet-stream"),
        ("trailing.", "application/octet-stream"),
        ("data.unknownext", "application/octet-stream"),
    ],
)
def test_content_type_for(name, expected):
    assert content_type_for(name) == expected


# --- Content-Disposition ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        (
            "ci_build_artifacts.zip",
            "attachment; filename=\"ci_build_artifacts.zip\"; filename*=UTF-8''ci_build_artifacts.zip",
        ),
        ("résumé.pdf", "attachment; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"),
        ("Æsir-Straße.zip", "attachment; filename=\"AEsir-Strasse.zip\"; filename*=UTF-8''%C3%86sir-Stra%C3%9Fe.zip"),
        ("日本.txt", "attachment; filename=\"%3F%3F.txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt"),
        (
            'my "file" (1).zip',
            "attachment; filename=\"my %22file%22 %281%29.zip\"; filename*=UTF-8''my%20%22file%22%20%281%29.zip",
        ),
        ("a&b'c%.zip", "attachment; filename=\"a%26b%27c%25.zip\"; filename*=UTF-8''a&b%27c%25.zip"),
        ("cr\r\nlf.zip", "attachment; filename=\"cr%0D%0Alf.zip\"; filename*=UTF-8''cr%0D%0Alf.zip"),
    ],
)
def test_rails_disposition(filename, expected):
    assert content_disposition(filename, rfc5987=True) == expected


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("hello.txt", 'attachment; filename="hello.txt"'),
        ('say "hi".txt', 'attachment; filename="say \\"hi\\".txt"'),
        ("back\\slash.txt", 'attachment; filename="back\\\\slash.txt"'),
        ("line\r\nbreak.txt", 'attachment; filename="linebreak.txt"'),
        ("tab\tnul\x00del\x7fc1\x85.txt", 'attachment; filename="tabnuldelc1.txt"'),
        ("résumé.pdf", 'attachment; filename="résumé.pdf"'),
        ("lone\udcffsurrogate", 'attachment; filename="lonesurrogate"'),
    ],
)
def test_workhorse_disposition(filename, expected):
    assert content_disposition(filename, rfc5987=False) == expected


# C0, ASCII, C1, Latin-1, the Latin Extended-A letters I18n knows, CJK, lone surrogates, an emoji
AWKWARD = [chr(code) for code in [*range(0x2FF), 0x1E9E, 0x3000, 0x65E5, *range(0xD7FF, 0xE001), 0x1F600]]


def test_every_disposition_is_a_header_aiohttp_sends():
    for filename in [*AWKWARD, "".join(AWKWARD)]:
        for rfc5987 in (True, False):
            value = content_disposition(filename, rfc5987=rfc5987)
            assert not any(char < " " or "\x7f" <= char <= "\x9f" for char in value), repr(filename)
            value.encode("utf-8")
        content_disposition(filename, rfc5987=True).encode("ascii")


@pytest.mark.parametrize(
    ("size", "limit"),
    [(0, 100 * MIB), (1024 * MIB, 100 * MIB), (1024 * MIB + 10, (1024 * MIB + 10) // 10), (10240 * MIB, 1024 * MIB)],
)
def test_central_directory_limit_follows_workhorse(size, limit):
    assert zipindex.central_directory_limit(size) == limit


# --- the index -------------------------------------------------------------------------------


@pytest.fixture
def parses(monkeypatch) -> list[Path]:
    """Records every central-directory parse."""
    seen: list[Path] = []
    real = zipindex._read_index

    def counting(fd, key, max_entries):
        seen.append(Path(key.path))
        return real(fd, key, max_entries)

    monkeypatch.setattr(zipindex, "_read_index", counting)
    return seen


async def test_lookup_is_exact_and_the_first_duplicate_wins(archive):
    cache = IndexCache()
    assert (await zipindex.find_entry(archive, "dup.txt", cache=cache)).file_size == len(b"first\n")
    for missing in ("dir", "DUP.TXT", "out/../hello.txt", "/hello.txt", "./hello.txt", "hello.txt/"):
        assert await zipindex.find_entry(archive, missing, cache=cache) is None
    entry = await zipindex.find_entry(str(archive), "dir/", cache=cache)
    assert entry.file_size == 0 and entry.name == "dir/"


async def test_a_directory_is_parsed_once_and_reparsed_when_the_file_changes(tmp_path, parses):
    cache = IndexCache()
    path = make_zip(tmp_path / "a.zip", {"a.txt": b"one"})
    for _ in range(3):
        assert await zipindex.find_entry(path, "a.txt", cache=cache)
    assert parses == [path]
    make_zip(tmp_path / "b.zip", {"a.txt": b"three", "b.txt": b"two"}).replace(path)
    entry = await zipindex.find_entry(path, "a.txt", cache=cache)
    assert entry.file_size == 5 and parses == [path, path]


async def test_the_cache_evicts_the_least_recently_used(tmp_path, parses):
    paths = [make_zip(tmp_path / f"{n}.zip", {"x": b"x", "y": b"y"}) for n in range(3)]
    cache = IndexCache(max_archives=2)
    for path in (paths[0], paths[1], paths[0], paths[2], paths[0], paths[1]):
        await zipindex.find_entry(path, "x", cache=cache)
    assert parses == [paths[0], paths[1], paths[2], paths[1]]  # paths[0] was used last, so paths[1] went
    by_entries = IndexCache(max_cached_entries=3)  # two 2-entry archives do not fit
    for path in (paths[0], paths[1], paths[0]):
        await zipindex.find_entry(path, "x", cache=by_entries)
    assert parses[4:] == [paths[0], paths[1], paths[0]]


async def test_concurrent_misses_parse_once(tmp_path, parses):
    path = make_zip(tmp_path / "a.zip", {f"f{n}": b"." for n in range(500)})
    cache = IndexCache()
    found = await asyncio.gather(*(zipindex.find_entry(path, "f7", cache=cache) for _ in range(10)))
    assert all(found) and parses == [path]


async def test_too_many_entries_are_refused(tmp_path):
    path = make_zip(tmp_path / "a.zip", {f"f{n}": b"." for n in range(10)})
    with pytest.raises(ArchiveLimitError):
        await zipindex.find_entry(path, "f1", cache=IndexCache(max_entries=9))
    assert await zipindex.find_entry(path, "f1", cache=IndexCache(max_entries=10))


async def test_an_oversized_central_directory_is_refused_before_it_is_read(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"a": b"a"})
    data = bytearray(path.read_bytes())
    struct.pack_into("<L", data, data.rfind(b"PK\x05\x06") + 12, 100 * MIB + 1)
    path.write_bytes(data)
    with pytest.raises(ArchiveLimitError):
        await zipindex.find_entry(path, "a", cache=IndexCache())


@pytest.mark.parametrize(
    "content",
    [b"", b"not a zip at all" * 100, b"junk before the zip", b"PK\x05\x06" + b"\x00" * 16 + b"\x05\x00"],
    ids=["empty", "text", "prepended", "truncated-comment"],
)
async def test_what_is_not_a_plain_zip_is_refused(tmp_path, content):
    path = tmp_path / "a.zip"
    if content == b"junk before the zip":  # self-extracting style: offsets no longer add up
        content += make_zip(tmp_path / "b.zip", {"a": b"a"}).read_bytes()
    path.write_bytes(content)
    with pytest.raises(ArchiveError):
        await zipindex.find_entry(path, "a", cache=IndexCache())


async def test_an_empty_zip_has_no_entries_and_a_missing_one_raises(tmp_path):
    path = make_zip(tmp_path / "a.zip", {})
    assert await zipindex.find_entry(path, "a", cache=IndexCache()) is None
    with pytest.raises(FileNotFoundError):
        await zipindex.find_entry(tmp_path / "missing.zip", "a", cache=IndexCache())


async def test_names_compare_as_bytes_whatever_the_utf8_flag(tmp_path):
    """Go compares raw bytes; zipfile would read this name as cp437 "cafÃ©.txt"."""
    path = make_zip(tmp_path / "a.zip", {"café.txt": b"coffee"})
    data = bytearray(path.read_bytes())
    pos, _ = next(central_records(bytes(data)))
    for flags_at in (6, pos + 8):  # local header, central record
        (flags,) = struct.unpack_from("<H", data, flags_at)
        struct.pack_into("<H", data, flags_at, flags & ~0x800)
    path.write_bytes(data)
    assert zipfile.ZipFile(path).namelist() == ["café.txt".encode().decode("cp437")]
    assert await zipindex.find_entry(path, "café.txt", cache=IndexCache())


def test_inflation_comes_in_bounded_pieces():
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    compressed = packer.compress(bytes(16 * MIB)) + packer.flush()
    assert len(compressed) < 20_000
    pieces = list(zipindex._inflated(iter([compressed[:7000], compressed[7000:]])))
    assert max(map(len, pieces)) <= CHUNK and sum(map(len, pieces)) == 16 * MIB
    with pytest.raises(ArchiveError, match="ends early"):
        list(zipindex._inflated(iter([compressed[:-10]])))
    with pytest.raises(ArchiveError, match="corrupt"):
        list(zipindex._inflated(iter([b"\xff" * 100])))


def test_checking_stops_as_soon_as_an_entry_outgrows_its_declared_size():
    entry = zipindex.EntryInfo("x", zipindex.ArchiveKey("x.zip", 0, 0, 0), 8, 0, 0, 0, 3 * CHUNK, 0, 0)
    pieces = zipindex._verified(itertools.repeat(b"x" * CHUNK), entry)  # an endless bomb
    assert [len(next(pieces)) for _ in range(2)] == [CHUNK, CHUNK]
    with pytest.raises(ArchiveError, match="more bytes"):
        next(pieces)


# --- streaming over HTTP ---------------------------------------------------------------------


async def test_a_deflated_text_file(serve, archive):
    client = await serve(archive)
    resp = await client.get("/f/hello.txt")
    assert resp.status == 200 and await resp.read() == HELLO
    assert resp.headers["Content-Length"] == str(len(HELLO))
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="hello.txt"'
    assert resp.headers["Content-Security-Policy"] == CSP
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "private"
    assert "Accept-Ranges" not in resp.headers and "Content-Encoding" not in resp.headers


@pytest.mark.parametrize(
    ("path", "body", "filename"),
    [
        ("out/hello.txt", b"nested\n", "hello.txt"),
        ("data.bin", BIN, "data.bin"),
        ("logs/build.log", LOG, "build.log"),
        ("link", b"../../../etc/passwd", "link"),  # the link target, never what it points at
        ("dup.txt", b"first\n", "dup.txt"),
        ("..%2Fevil", b"evil\n", "evil"),
        ("%25ff.txt", b"a literal percent sign\n", "%ff.txt"),
    ],
)
async def test_entries_come_back_byte_for_byte(serve, archive, path, body, filename):
    client = await serve(archive)
    resp = await client.get(f"/f/{path}")
    assert resp.status == 200 and await resp.read() == body
    assert resp.headers["Content-Length"] == str(len(body))
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{filename}"'


async def test_names_that_headers_cannot_carry_as_they_are(serve, archive):
    client = await serve(archive)
    resp = await client.get("/f/line%0D%0Abreak%22.txt")
    assert resp.status == 200 and await resp.read() == b"crlf\n"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="linebreak\\".txt"'
    resp = await client.get("/f/résumé.pdf")
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/pdf"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="résumé.pdf"'


async def test_directories_need_the_trailing_slash(serve, archive):
    client = await serve(archive)
    resp = await client.get("/f/dir/")
    assert resp.status == 200 and await resp.read() == b""
    assert resp.headers["Content-Length"] == "0"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="dir"'
    assert (await client.get("/f/dir")).status == 404


@pytest.mark.parametrize("path", ["evil", ".%2F..%2Fevil", "%2F..%2Fevil", "out%2F..%2Fhello.txt", "out%5Chello.txt"])
async def test_traversal_shapes_only_match_entries_named_so(serve, archive, path):
    client = await serve(archive)
    assert (await client.get(f"/f/{path}")).status == 404


async def test_head_sends_headers_only(serve, archive):
    client = await serve(archive)
    resp = await client.head("/f/logs/build.log")
    assert resp.status == 200 and await resp.read() == b""
    assert resp.headers["Content-Length"] == str(len(LOG))
    assert resp.headers["Content-Disposition"] == 'attachment; filename="build.log"'
    assert not producers()


@pytest.mark.parametrize("path", ["logs/build.log", "data.bin"])
async def test_range_is_ignored(serve, archive, path):
    client = await serve(archive)
    resp = await client.get(f"/f/{path}", headers={"Range": "bytes=0-9"})
    assert resp.status == 200 and len(await resp.read()) > 10
    assert "Content-Range" not in resp.headers


async def test_stored_entries_use_sendfile_or_fall_back_to_reading(serve, archive, monkeypatch):
    loop = asyncio.get_running_loop()
    calls = []
    real = loop.sendfile

    async def tracking(*args, **kwargs):
        calls.append(args[2:])
        return await real(*args, **kwargs)

    monkeypatch.setattr(loop, "sendfile", tracking)
    client = await serve(archive)
    assert await (await client.get("/f/data.bin")).read() == BIN
    assert len(calls) == 1 and calls[0][1] == len(BIN)

    async def unsupported(*args, **kwargs):  # uvloop
        raise NotImplementedError

    monkeypatch.setattr(loop, "sendfile", unsupported)
    assert await (await client.get("/f/data.bin")).read() == BIN


@pytest.fixture
def zip64_archive(tmp_path, monkeypatch) -> Path:
    """Zip64 records at toy sizes: zipfile's threshold lowered to 1 KiB while writing."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1024)
    path = tmp_path / "zip64.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("stored.bin", BIN[:5000])
        zf.writestr("deflated.log", LOG[:6000], compress_type=zipfile.ZIP_DEFLATED)
        with zf.open("forced.txt", "w", force_zip64=True) as member:  # zip64 extra in the local header only
            member.write(HELLO)
    monkeypatch.undo()
    data = path.read_bytes()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    return path


async def test_zip64_records_and_extras(serve, zip64_archive):
    client = await serve(zip64_archive)
    for name, body in (("stored.bin", BIN[:5000]), ("deflated.log", LOG[:6000]), ("forced.txt", HELLO)):
        resp = await client.get(f"/f/{name}")
        assert resp.status == 200 and await resp.read() == body


class Unseekable(io.RawIOBase):
    """An output zipfile cannot seek back into, so every member gets a data descriptor."""

    def __init__(self, sink):
        self.sink = sink

    def writable(self):
        return True

    def write(self, data):
        return self.sink.write(data)


async def test_members_with_data_descriptors(serve, tmp_path):
    path = tmp_path / "streamed.zip"
    with path.open("wb") as sink, zipfile.ZipFile(Unseekable(sink), "w") as zf:
        zf.writestr("stored.bin", BIN)
        zf.writestr("deflated.log", LOG, compress_type=zipfile.ZIP_DEFLATED)
    assert all(info.flag_bits & 0x08 for info in zipfile.ZipFile(path).infolist())
    client = await serve(path)
    assert await (await client.get("/f/stored.bin")).read() == BIN
    assert await (await client.get("/f/deflated.log")).read() == LOG


@pytest.mark.parametrize(
    ("fields", "method"),
    [
        ({"flags": 0x1}, zipfile.ZIP_DEFLATED),  # encrypted
        ({"method": 12}, zipfile.ZIP_DEFLATED),  # bzip2: Workhorse cannot either
        ({"compress_size": 600, "file_size": 600}, zipfile.ZIP_STORED),  # runs into the next entry
        ({"compress_size": 400}, zipfile.ZIP_STORED),  # stored, yet two sizes
    ],
)
async def test_unservable_entries_fail_before_any_byte(serve, tmp_path, fields, method):
    path = make_zip(tmp_path / "a.zip", {"a.txt": b"a" * 500, "b.txt": b"b" * 500}, method)
    patch_central(path, b"a.txt", **fields)
    client = await serve(path)
    assert (await client.get("/f/a.txt")).status == 500
    assert (await client.get("/f/b.txt")).status == 200


@pytest.mark.parametrize(
    "fields",
    [{"file_size": len(LOG) - 1}, {"file_size": len(LOG) + 1}, {"crc": zlib.crc32(LOG) ^ 1}],
    ids=["inflates-to-more", "inflates-to-less", "crc"],
)
async def test_an_archive_that_lies_ends_in_a_short_body(serve, tmp_path, fields):
    path = make_zip(tmp_path / "a.zip", {"big.log": LOG})
    patch_central(path, b"big.log", **fields)
    client = await serve(path)
    resp = await client.get("/f/big.log")
    assert resp.status == 200 and resp.headers["Content-Length"] == str(fields.get("file_size", len(LOG)))
    with pytest.raises(ClientPayloadError):
        await resp.read()
    await wait_until(lambda: not producers() and not open_descriptors(path))


async def test_a_replaced_archive_is_not_read_with_a_stale_index(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"a.txt": HELLO})
    entry = await zipindex.find_entry(path, "a.txt", cache=IndexCache())
    make_zip(tmp_path / "b.zip", {"other": b"x", "a.txt": b"different"}).replace(path)
    with pytest.raises(ArchiveError, match="changed"):
        await zipstream.stream_entry(make_mocked_request("GET", "/f/a.txt"), path, entry)
    assert not open_descriptors(path)


@pytest.mark.parametrize("server_kwargs", [{}, {"handler_cancellation": True}], ids=["disconnect", "cancel"])
@pytest.mark.parametrize("name", ["zeros.bin", "zeros.stored"])
async def test_a_client_that_goes_away_leaves_no_thread_and_no_open_file(serve, big_archive, server_kwargs, name):
    client = await serve(big_archive, **server_kwargs)
    assert await (await client.get("/f/hello.txt")).read() == HELLO
    # Bring the loop's default executor to its full size first: under load it would otherwise
    # add a (pooled, legitimate) worker mid-test and move the thread count.
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(None, time.sleep, 0.02) for _ in range(64)))
    baseline = threading.active_count()
    resp = await client.get(f"/f/{name}")
    assert resp.status == 200
    assert await resp.content.readexactly(CHUNK) == bytes(CHUNK)
    assert open_descriptors(big_archive)  # mid-stream
    assert bool(producers()) == (name == "zeros.bin")  # STORED goes by sendfile, without a thread
    resp.close()
    await wait_until(lambda: not producers() and not open_descriptors(big_archive))
    await wait_until(lambda: threading.active_count() <= baseline)
    assert await (await client.get("/f/hello.txt")).read() == HELLO  # the server carries on


async def test_a_whole_bomb_shaped_member_streams(serve, big_archive):
    client = await serve(big_archive)
    resp = await client.get("/f/zeros.bin")
    total = 0
    async for piece in resp.content.iter_chunked(CHUNK):
        assert not piece.strip(b"\x00")
        total += len(piece)
    assert total == ZEROS == int(resp.headers["Content-Length"])
    await wait_until(lambda: not producers())
