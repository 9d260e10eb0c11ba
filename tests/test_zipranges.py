"""An archive read by byte ranges (as from S3) gives exactly what the local file path gives.

The reader here holds the archive in memory and records every range asked for, so the number and
shape of the reads (what each would cost as a GET) is checked too.
"""

import asyncio
import contextlib
import hashlib
import random
import struct
import warnings
import zipfile
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import pytest

from jobsvc.storage import zipindex
from jobsvc.storage.zipindex import CHUNK, ArchiveError, IndexCache, ObjectKey
from tests.test_zipentry import BIN, HELLO, LOG, Unseekable, make_zip, patch_central, write_archive


class MemoryReader:
    """A RangeReader over bytes, pinned to what it held when ``version()`` was first asked."""

    def __init__(self, data: bytes, name: str = "mem.zip"):
        self.data = data
        self.name = name
        self.reads: list[tuple[int, int]] = []
        self.streams: list[tuple[int, int]] = []
        self._version: ObjectKey | None = None

    def replace(self, data: bytes) -> None:
        self.data = data

    async def version(self) -> tuple[ObjectKey, int]:
        if self._version is None:
            self._version = ObjectKey(self.name, len(self.data), hashlib.md5(self.data).hexdigest())
        return self._version, self._version.size

    def _check(self) -> None:
        if self._version is not None and hashlib.md5(self.data).hexdigest() != self._version.etag:
            raise ArchiveError("the archive changed since it was indexed")

    async def read(self, start: int, length: int) -> bytes:
        self._check()
        self.reads.append((start, length))
        await asyncio.sleep(0)
        return self.data[start : start + length]

    async def stream(self, start: int, length: int) -> AsyncGenerator[bytes, None]:
        self._check()
        self.streams.append((start, length))
        end = min(start + length, len(self.data))
        while start < end:
            await asyncio.sleep(0)
            yield self.data[start : min(start + CHUNK, end)]
            start += CHUNK


def local_bytes(path: Path, entry: zipindex.EntryInfo) -> bytes:
    member = zipindex.open_member(str(path), entry)
    with member.file:
        return b"".join(zipindex.entry_pieces(member.file.fileno(), entry, member.data_offset))


async def remote_bytes(reader: MemoryReader, entry: zipindex.EntryInfo) -> bytes:
    pieces = await zipindex.open_remote_member(reader, entry)
    async with contextlib.aclosing(pieces):
        return b"".join([piece async for piece in pieces])


async def outcome(find: Callable, read: Callable, name: str) -> tuple:
    """What looking up and reading ``name`` comes to, phase by phase."""
    try:
        entry = await find(name)
    except (ArchiveError, OSError) as exc:
        return ("find", type(exc).__name__, str(exc))
    if entry is None:
        return ("missing",)
    fields = (entry.name, entry.method, entry.flags, entry.crc, entry.compress_size, entry.file_size)
    fields += (entry.header_offset, entry.data_limit)
    try:
        return ("read", fields, await read(entry))
    except ArchiveError as exc:
        return ("read", fields, type(exc).__name__, str(exc))


async def assert_same(path: Path, names: list[str]) -> MemoryReader:
    reader = MemoryReader(path.read_bytes())
    local_cache, remote_cache = IndexCache(), IndexCache()
    for name in names:
        local = await outcome(
            lambda n: zipindex.find_entry(path, n, cache=local_cache),
            lambda e: asyncio.to_thread(local_bytes, path, e),
            name,
        )
        remote = await outcome(
            lambda n: zipindex.find_entry_in(reader, n, cache=remote_cache),
            lambda e: remote_bytes(reader, e),
            name,
        )
        assert remote == local, name
    return reader


def write_zip(path: Path, build: Callable[[zipfile.ZipFile], None], **kwargs) -> Path:
    with zipfile.ZipFile(path, "w", **kwargs) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        build(zf)
    return path


ARCHIVE_NAMES = ["hello.txt", "out/hello.txt", "data.bin", "dir/", "dir", "link", "../evil", 'line\r\nbreak".txt']
ARCHIVE_NAMES += ["résumé.pdf", "%ff.txt", "dup.txt", "logs/build.log", "missing", "HELLO.TXT", "hello.txt/"]


TAIL = 22 + 0xFFFF + 20 + 56  # the end record, the longest comment, the zip64 locator and end record


async def test_the_same_entries_and_bytes_and_one_read_finds_a_directory_near_the_end(tmp_path):
    small = write_zip(tmp_path / "small.zip", lambda zf: [zf.writestr(f"f{n}", b"x" * n) for n in range(20)])
    reader = await assert_same(small, [f"f{n}" for n in range(20)])
    assert reader.reads == [(0, small.stat().st_size)]  # the tail is the whole archive, directory and all
    assert len(reader.streams) == 20  # one ranged read per member

    path = write_archive(tmp_path / "artifacts.zip")
    reader = await assert_same(path, ARCHIVE_NAMES)
    assert path.stat().st_size > TAIL and reader.reads == [(path.stat().st_size - TAIL, TAIL)]

    empty = write_zip(tmp_path / "empty.zip", lambda zf: (zf.writestr("e", b""), zf.writestr("d", b"", 8)))
    await assert_same(empty, ["e", "d"])


async def test_a_directory_longer_than_the_tail_is_a_second_read(tmp_path):
    path = make_zip(tmp_path / "many.zip", {f"dir/file-{n:05d}.txt": b"%d" % n for n in range(3000)})
    reader = await assert_same(path, ["dir/file-00000.txt", "dir/file-02999.txt", "dir/file-3000.txt"])
    size = path.stat().st_size
    cd_size, cd_offset = struct.unpack_from("<LL", path.read_bytes(), size - 22 + 12)
    assert cd_size > TAIL and reader.reads == [(size - TAIL, TAIL), (cd_offset, cd_size)]


def zip64_members(zf: zipfile.ZipFile) -> None:
    zf.writestr("stored.bin", BIN[:5000])
    zf.writestr("deflated.log", LOG[:6000], compress_type=zipfile.ZIP_DEFLATED)
    with zf.open("forced.txt", "w", force_zip64=True) as member:
        member.write(HELLO)


def with_extensible_data(data: bytes, extra: int) -> bytes:
    """The zip64 end record grown by an ``extra``-byte extensible data sector (its size field says so)."""
    record_at = data.rfind(b"PK\x06\x06")
    (record_size,) = struct.unpack_from("<Q", data, record_at + 4)
    grown = bytearray(data[: record_at + 56] + b"e" * extra + data[record_at + 56 :])
    struct.pack_into("<Q", grown, record_at + 4, record_size + extra)
    return bytes(grown)


async def test_zip64_end_records_wherever_they_lie(tmp_path, monkeypatch):
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1024)
    plain = write_zip(tmp_path / "zip64.zip", zip64_members)
    commented = write_zip(
        tmp_path / "commented.zip", lambda zf: (zip64_members(zf), setattr(zf, "comment", b"c" * 0xFFFF))
    )
    monkeypatch.undo()
    assert b"PK\x06\x06" in plain.read_bytes()
    names = ["stored.bin", "deflated.log", "forced.txt"]
    assert len((await assert_same(plain, names)).reads) == 1
    # The longest comment still leaves the zip64 records in the tail; the directory is before it.
    reader = await assert_same(commented, names)
    assert [length for _, length in reader.reads] == [TAIL, reader.reads[1][1]]
    # A zip64 end record with an extensible data sector, behind the longest comment: read on its own.
    extended = tmp_path / "extended.zip"
    extended.write_bytes(with_extensible_data(commented.read_bytes(), 100))
    reader = await assert_same(extended, names)
    assert [length for _, length in reader.reads] == [TAIL, 56, reader.reads[2][1]]
    assert (await zipindex.find_entry(extended, "forced.txt", cache=IndexCache())).file_size == len(HELLO)


async def test_members_with_data_descriptors(tmp_path):
    path = tmp_path / "streamed.zip"
    with path.open("wb") as sink, zipfile.ZipFile(Unseekable(sink), "w") as zf:
        zf.writestr("stored.bin", BIN)
        zf.writestr("deflated.log", LOG, compress_type=zipfile.ZIP_DEFLATED)
    await assert_same(path, ["stored.bin", "deflated.log"])


@pytest.mark.parametrize(
    "content",
    [b"", b"not a zip at all" * 100, b"PK\x05\x06" + b"\x00" * 16 + b"\x05\x00", b"PK\x05\x06" + b"\x00" * 18],
    ids=["empty", "text", "truncated-comment", "end-record-only"],
)
async def test_what_is_not_a_zip_fails_alike(tmp_path, content):
    path = tmp_path / "a.zip"
    path.write_bytes(content)
    await assert_same(path, ["a"])


@pytest.mark.parametrize(
    "damage",
    [
        "prepended",
        "oversized-directory",
        "bad-zip64-locator",
        "multi-disk",
        "truncated-tail",
        "bad-local-header",
        "local-name-runs-long",
    ],
)
async def test_damaged_archives_fail_alike(tmp_path, damage, monkeypatch):
    if damage == "bad-zip64-locator":
        monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1024)
    path = make_zip(tmp_path / "a.zip", {"a.txt": LOG[:3000], "b.txt": b"b" * 500}, zipfile.ZIP_STORED)
    monkeypatch.undo()
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    if damage == "prepended":
        data[:0] = b"junk before the zip"
    elif damage == "oversized-directory":
        struct.pack_into("<L", data, end + 12, 100 * 1024 * 1024 + 1)
    elif damage == "bad-zip64-locator":
        locator = data.rfind(b"PK\x06\x07")
        assert locator > 0
        struct.pack_into("<Q", data, locator + 8, 2**63 + 5)  # the record would lie far past the end
    elif damage == "multi-disk":
        struct.pack_into("<H", data, end + 4, 1)
    elif damage == "truncated-tail":
        data = data[: len(data) - 5]
    elif damage == "bad-local-header":
        data[0:4] = b"XK\x03\x04"
    elif damage == "local-name-runs-long":
        struct.pack_into("<H", data, 26, 60000)
    path.write_bytes(data)
    await assert_same(path, ["a.txt", "b.txt"])


@pytest.mark.parametrize(
    ("fields", "method"),
    [
        ({"flags": 0x1}, zipfile.ZIP_DEFLATED),
        ({"method": 12}, zipfile.ZIP_DEFLATED),
        ({"compress_size": 600, "file_size": 600}, zipfile.ZIP_STORED),
        ({"compress_size": 400}, zipfile.ZIP_STORED),
        ({"file_size": 499}, zipfile.ZIP_DEFLATED),
        ({"file_size": 501}, zipfile.ZIP_DEFLATED),
        ({"crc": 0}, zipfile.ZIP_DEFLATED),
        ({"crc": 0}, zipfile.ZIP_STORED),
        ({"compress_size": 3}, zipfile.ZIP_DEFLATED),  # the deflate data ends early
    ],
)
async def test_entries_that_cannot_be_served_fail_alike(tmp_path, fields, method):
    path = make_zip(tmp_path / "a.zip", {"a.txt": b"a" * 500, "b.txt": b"b" * 500}, method)
    patch_central(path, b"a.txt", **fields)
    await assert_same(path, ["a.txt", "b.txt"])


async def test_concurrent_misses_read_and_parse_once(tmp_path):
    path = make_zip(tmp_path / "a.zip", {f"f{n}": bytes(100) for n in range(2000)})
    reader, cache = MemoryReader(path.read_bytes()), IndexCache()
    lookups = [asyncio.ensure_future(zipindex.find_entry_in(reader, f"f{n}", cache=cache)) for n in range(10)]
    await asyncio.sleep(0)
    lookups[0].cancel()  # one waiter going away does not fail the load the others wait for
    found = await asyncio.gather(*lookups[1:])
    assert [entry.name for entry in found] == [f"f{n}" for n in range(1, 10)]
    assert len(reader.reads) == 2
    assert await zipindex.find_entry_in(reader, "f1999", cache=cache) and len(reader.reads) == 2


async def test_a_failed_load_is_not_cached(tmp_path):
    reader, cache = MemoryReader(b"not a zip" * 10), IndexCache()
    for _ in range(2):
        with pytest.raises(ArchiveError, match="not a zip"):
            await zipindex.find_entry_in(reader, "a", cache=cache)
    assert len(reader.reads) == 2


async def test_an_entry_of_another_version_is_refused(tmp_path):
    first = MemoryReader(make_zip(tmp_path / "a.zip", {"a.txt": HELLO}).read_bytes())
    entry = await zipindex.find_entry_in(first, "a.txt", cache=IndexCache())
    second = MemoryReader(make_zip(tmp_path / "b.zip", {"a.txt": b"other"}).read_bytes())
    with pytest.raises(ArchiveError, match="changed"):
        await zipindex.open_remote_member(second, entry)
    assert second.streams == []  # refused before a byte was asked for
    first.replace(second.data)  # changed under the reader: its reads refuse (S3: If-Match)
    with pytest.raises(ArchiveError, match="changed"):
        await zipindex.open_remote_member(first, entry)


async def test_a_member_is_read_in_bounded_pieces_and_closing_early_stops_the_read(tmp_path):
    data = random.Random(3).randbytes(3 * CHUNK + 17)
    path = make_zip(tmp_path / "a.zip", {"stored.bin": data, "z.log": LOG}, zipfile.ZIP_STORED)
    reader = MemoryReader(path.read_bytes())
    entry = await zipindex.find_entry_in(reader, "stored.bin", cache=IndexCache())
    pieces = await zipindex.open_remote_member(reader, entry)
    async with contextlib.aclosing(pieces):
        first = await anext(pieces)
    assert 0 < len(first) <= CHUNK and data.startswith(first)
    with pytest.raises(StopAsyncIteration):
        await anext(pieces)
    assert reader.streams == [(entry.header_offset, entry.data_limit - entry.header_offset)]
