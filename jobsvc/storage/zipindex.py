"""The index of a stored artifact zip, and one member's bytes out of it, as GitLab Workhorse's
``gitlab-zip-cat`` reads them.

An entry name is a lookup *key*: it is compared byte for byte with the names in the archive's
central directory, never joined to a filesystem path, and nothing is ever extracted to disk.

The central directory is parsed here rather than by :mod:`zipfile` because:

* names must compare as raw bytes, as Go's ``archive/zip`` does (zipfile decodes names
  without the UTF-8 flag as cp437, so such an entry would never match);
* this machine's CPython 3.11.7 predates the zipfile fixes for CVE-2024-0450 (overlapping
  entries) and CVE-2025-8291 (zip64 end-record offset), so the end records are checked for
  consistency, an entry's data may not run into the next entry, and the central directory is
  capped the way Workhorse caps it (100 MiB up to a 1 GiB archive, a tenth of the size beyond)
  before a byte of it is read;
* parsing is the expensive part (tens of milliseconds for 10,000 entries), so the parsed
  directory is kept in a small LRU cache keyed by the archive's identity: (path, size, mtime, inode)
  for a local file, (URL, size, ETag) for an object in S3.

The parser asks for byte ranges and never touches a file itself (:func:`_index_steps`), so the same
code serves a local file (``os.pread`` in a worker thread: :func:`find_entry`) and an archive read
by ranged GETs (:func:`find_entry_in` with a :class:`RangeReader`): one read of the archive's tail
(the end record, its comment and the zip64 records, and for a small archive the whole central
directory), then, if it lies further back, one read of the central directory.

A member's bytes come out in pieces checked against the central directory: size and CRC-32,
the last piece held back until both match, deflate inflated at most CHUNK bytes per step.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import zlib
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import AsyncGenerator, Generator, Hashable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple, Protocol, TypeVar

log = logging.getLogger(__name__)


CHUNK = 64 * 1024


MIB = 1 << 20


STORED = 0


DEFLATED = 8


_ENCRYPTED = 0x1


_SATURATED = 0xFFFFFFFF


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record


_LOCATOR = struct.Struct("<4sLQL")  # zip64 end of central directory locator


_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record


_CENTRAL = struct.Struct("<4s4x2H4x3L3H8xL")  # central directory file header, the fields used here


_LOCAL_SIZE = 30  # local file header; its name and extra lengths sit at offset 26


_LOCAL_LENGTHS = struct.Struct("<HH")


class ArchiveError(Exception):
    """The archive cannot be served faithfully: not a zip, corrupt, lying, or changed on disk."""


class ArchiveLimitError(ArchiveError):
    """The central directory is bigger than the limits allow (Workhorse's ``CodeLimitsReached``)."""


class ArchiveKey(NamedTuple):
    """Which file an index was read from; a replaced or rewritten archive gets a new key."""

    path: str
    size: int
    mtime_ns: int
    inode: int


def archive_key(path: str, st: os.stat_result) -> ArchiveKey:
    return ArchiveKey(path, st.st_size, st.st_mtime_ns, st.st_ino)


class ObjectKey(NamedTuple):
    """Which object version an index was read from: a replaced object has a new ETag."""

    path: str  # the object's URL, s3://bucket/key
    size: int
    etag: str


class RangeReader(Protocol):
    """An archive read by byte ranges (an object in S3), pinned to the version ``version()`` saw.

    Every read after ``version()`` must come from that version or raise ArchiveError (S3: If-Match).
    A missing archive raises FileNotFoundError.
    """

    async def version(self) -> tuple[Hashable, int]:
        """(The cache key of this version of the archive, its size in bytes.)"""
        ...

    async def read(self, start: int, length: int) -> bytes:
        """Like pread: ``length`` bytes from ``start``, fewer at the end of the archive."""
        ...

    def stream(self, start: int, length: int) -> AsyncGenerator[bytes, None]:
        """The same bytes as ``read``, in pieces of at most CHUNK, from one request."""
        ...


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """One central-directory entry, with what streaming it needs."""

    name: str
    archive: Hashable  # the ArchiveKey or ObjectKey of the archive it was read from
    method: int
    flags: int
    crc: int
    compress_size: int
    file_size: int  # the uncompressed size: sent as Content-Length, and all that will be sent
    header_offset: int
    data_limit: int  # where the next local header (or the central directory) starts


class _Record(NamedTuple):
    name: bytes
    flags: int
    method: int
    crc: int
    compress_size: int
    file_size: int
    header_offset: int
    end: int  # where the next record starts


class _End(NamedTuple):
    at: int  # where the (zip64) end record starts: the central directory must end right there
    count: int  # type: ignore[assignment]  # shadows tuple.count on purpose: the record's own name
    cd_size: int
    cd_offset: int


def central_directory_limit(archive_size: int) -> int:
    """Workhorse's ``SizeToLimit``: 100 MiB for archives up to 1 GiB, a tenth of the size beyond."""
    return 100 * MIB if archive_size <= 1024 * MIB else archive_size // 10


def _central_record(central: bytes, pos: int) -> _Record:
    if pos + _CENTRAL.size > len(central):
        raise ArchiveError("the central directory is truncated")
    sig, flags, method, crc, compress_size, file_size, name_len, extra_len, comment_len, offset = _CENTRAL.unpack_from(
        central, pos
    )
    if sig != b"PK\x01\x02":
        raise ArchiveError("bad central directory record")
    name_at = pos + _CENTRAL.size
    extra_at = name_at + name_len
    end = extra_at + extra_len + comment_len
    if end > len(central):
        raise ArchiveError("the central directory is truncated")
    if _SATURATED in (compress_size, file_size, offset):
        file_size, compress_size, offset = _zip64_values(
            central[extra_at : extra_at + extra_len], file_size, compress_size, offset
        )
    return _Record(central[name_at:extra_at], flags, method, crc, compress_size, file_size, offset, end)


def _zip64_values(extra: bytes, *values: int) -> tuple[int, ...]:
    """Replace the saturated 32-bit values (size, compressed size, offset, in that order) from the zip64 extra."""
    pos = 0
    while pos + 4 <= len(extra):
        header_id, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + size]
        pos += 4 + size
        if header_id == 0x0001:
            wide = [value for (value,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            wide.reverse()
            if sum(value == _SATURATED for value in values) > len(wide):
                raise ArchiveError("the zip64 extra field is too short")
            return tuple(wide.pop() if value == _SATURATED else value for value in values)
    raise ArchiveError("zip64 sizes without a zip64 extra field")


# How much of an archive's end is read at once: the end record and the longest comment it may have
# (found only within these, as before), plus room before them for the zip64 locator and end record.
_SEARCHED = _EOCD.size + 0xFFFF
_TAIL = _SEARCHED + _LOCATOR.size + _EOCD64.size

_Steps = Generator[tuple[int, int], bytes, "_Index"]  # yields (start, length), is sent those bytes


class _Tail(NamedTuple):
    at: int
    data: bytes  # the archive's bytes from ``at`` to its end

    def bytes_at(self, start: int, length: int) -> bytes | None:
        """What pread would give, if it lies in the tail; None otherwise."""
        if start < self.at:
            return None
        return self.data[start - self.at : start - self.at + length]


def _find_end(tail: _Tail) -> tuple[_End, int | None]:
    """The end of central directory record, and where the zip64 end record is when its locator is there
    (its disk numbers then replace the end record's)."""
    data, search_from = tail.data, max(0, len(tail.data) - _SEARCHED)
    pos = data.rfind(b"PK\x05\x06", search_from, len(data) - _EOCD.size + 4)
    if pos < 0:
        raise ArchiveError("not a zip archive")
    _, disk, cd_disk, _, count, cd_size, cd_offset, comment_len = _EOCD.unpack_from(data, pos)
    if pos + _EOCD.size + comment_len > len(data):  # Go refuses a truncated comment too
        raise ArchiveError("not a zip archive")
    end = _End(tail.at + pos, count, cd_size, cd_offset)
    locator = tail.bytes_at(end.at - _LOCATOR.size, _LOCATOR.size) if end.at >= _LOCATOR.size else None
    if locator is None or not locator.startswith(b"PK\x06\x07"):  # the tail always holds the locator
        if disk or cd_disk:
            raise ArchiveError("multi-disk archives are not supported")
        return end, None
    _, record_disk, record_at, disks = _LOCATOR.unpack(locator)
    if record_disk or disks > 1:
        raise ArchiveError("multi-disk archives are not supported")
    return end, record_at


def _find_end64(record: bytes, record_at: int, locator_at: int) -> _End:
    """The zip64 end record, which must end exactly where its locator starts (the CVE-2025-8291 check)."""
    if len(record) != _EOCD64.size or not record.startswith(b"PK\x06\x06"):
        raise ArchiveError("bad zip64 end of central directory record")
    _, record_size, _, _, disk, cd_disk, _, count, cd_size, cd_offset = _EOCD64.unpack(record)
    if record_size < _EOCD64.size - 12 or record_at + 12 + record_size != locator_at:
        raise ArchiveError("the zip64 end record is not where its locator says")
    if disk or cd_disk:
        raise ArchiveError("multi-disk archives are not supported")
    return _End(record_at, count, cd_size, cd_offset)


@dataclass(frozen=True)
class _Index:
    """A parsed central directory: its raw bytes, name → record position (first wins), entry starts."""

    key: Hashable
    central: bytes
    names: dict[bytes, int]
    starts: array[int]  # sorted distinct local header offsets
    cd_offset: int

    def listing(self) -> list[tuple[bytes, int]]:
        """Each entry name (the first of duplicates), in the directory's order, with its uncompressed size."""
        return [(name, _central_record(self.central, pos).file_size) for name, pos in self.names.items()]

    def find(self, name: str) -> EntryInfo | None:
        pos = self.names.get(name.encode("utf-8"))
        if pos is None:
            return None
        record = _central_record(self.central, pos)
        following = bisect_right(self.starts, record.header_offset)
        limit = self.starts[following] if following < len(self.starts) else self.cd_offset
        return EntryInfo(
            name,
            self.key,
            record.method,
            record.flags,
            record.crc,
            record.compress_size,
            record.file_size,
            record.header_offset,
            limit,
        )


def _index_steps(key: Hashable, size: int, max_entries: int) -> _Steps:
    """Parse the central directory of a ``size``-byte archive, asking for the byte ranges it needs.

    A generator: it yields ``(start, length)`` and is sent what pread would read there; it returns the
    index. A directory over the limits is refused before it is read.
    """
    tail_at = max(0, size - _TAIL)
    tail = _Tail(tail_at, (yield tail_at, size - tail_at))
    end, record_at = _find_end(tail)
    if record_at is not None:
        record = tail.bytes_at(record_at, _EOCD64.size)
        if record is None:
            record = yield record_at, _EOCD64.size
        end = _find_end64(record, record_at, end.at - _LOCATOR.size)
    if end.count > max_entries:
        raise ArchiveLimitError(f"{end.count} entries; at most {max_entries} are served")
    if end.cd_size > central_directory_limit(size):
        raise ArchiveLimitError(f"a {end.cd_size}-byte central directory is over the limit")
    if end.cd_offset + end.cd_size != end.at:
        raise ArchiveError("the central directory is not where the end record says")
    if end.count * _CENTRAL.size > end.cd_size:
        raise ArchiveError("the record count does not fit in the central directory")
    central = tail.bytes_at(end.cd_offset, end.cd_size)
    if central is None:
        central = yield end.cd_offset, end.cd_size
    if len(central) != end.cd_size:
        raise ArchiveError("the central directory is truncated")
    return _parse_central(key, central, end)


def _parse_central(key: Hashable, central: bytes, end: _End) -> _Index:
    names: dict[bytes, int] = {}
    starts: set[int] = set()
    pos = 0
    for _ in range(end.count):
        record = _central_record(central, pos)
        if record.header_offset + _LOCAL_SIZE > end.cd_offset:
            raise ArchiveError("an entry starts inside the central directory")
        names.setdefault(record.name, pos)
        starts.add(record.header_offset)
        pos = record.end
    if pos != len(central):
        raise ArchiveError("the central directory holds more than its record count")
    return _Index(key, central, names, array("Q", sorted(starts)), end.cd_offset)


def _read_index(fd: int, key: ArchiveKey, max_entries: int) -> _Index:
    """Parse a local archive's central directory (blocking)."""
    steps = _index_steps(key, key.size, max_entries)
    request = next(steps)
    while True:
        try:
            request = steps.send(os.pread(fd, request[1], request[0]))
        except StopIteration as done:
            return done.value


_Result = TypeVar("_Result")


def _step(
    steps: Generator[tuple[int, int], bytes, _Result], data: bytes
) -> tuple[tuple[int, int] | None, _Result | None]:
    """One step of a parse, in a worker thread (a StopIteration may not cross into a future)."""
    try:
        return steps.send(data), None
    except StopIteration as done:
        return None, done.value


async def _read_index_from(reader: RangeReader, key: Hashable, size: int, max_entries: int) -> _Index:
    """Parse the central directory of an archive read by ranges; the parsing itself runs in a worker thread."""
    steps = _index_steps(key, size, max_entries)
    request = next(steps)
    while True:
        data = await reader.read(*request)
        request, index = await asyncio.to_thread(_step, steps, data)  # type: ignore[arg-type]
        if request is None:
            assert index is not None
            return index


class IndexCache:
    """Parsed central directories, least recently used evicted first.

    Bounded by archives and by entries overall (a parsed entry costs a few hundred bytes).
    Hits happen on the event loop; a miss parses in a worker thread, one parse at a time,
    so a burst of requests for a freshly uploaded archive parses it once. An archive read by
    ranges (:meth:`find_in`) is fetched on the event loop and parsed in a worker thread; concurrent
    misses for the same version share one fetch and parse, other archives load meanwhile.
    """

    def __init__(self, max_archives: int = 16, max_entries: int = 200_000, max_cached_entries: int = 500_000):
        self.max_archives = max_archives
        self.max_entries = max_entries  # per archive: more and the archive is refused
        self.max_cached_entries = max_cached_entries
        self._indexes: OrderedDict[Hashable, _Index] = OrderedDict()
        self._cached_entries = 0
        self._lock = threading.Lock()  # guards the dict; held only briefly
        self._parsing = threading.Lock()
        self._loading: dict[Hashable, asyncio.Task[_Index]] = {}  # ranged loads in flight (event loop only)

    async def find(self, path: str, name: str) -> EntryInfo | None:
        return (await self.index(path)).find(name)

    async def find_in(self, reader: RangeReader, name: str) -> EntryInfo | None:
        return (await self.index_in(reader)).find(name)

    async def index(self, path: str) -> _Index:
        index = self._get(archive_key(path, os.stat(path)))
        if index is None:
            index = await asyncio.to_thread(self._load, path)
        return index

    async def index_in(self, reader: RangeReader) -> _Index:
        key, size = await reader.version()
        index = self._get(key)
        if index is None:
            index = await self._load_from(reader, key, size)
        return index

    async def _load_from(self, reader: RangeReader, key: Hashable, size: int) -> _Index:
        loop = asyncio.get_running_loop()
        task = self._loading.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._parse_from(reader, key, size))
            self._loading[key] = task
            task.add_done_callback(lambda done: self._loaded(key, done))
        return await asyncio.shield(task)  # one waiter's cancellation must not fail the others

    async def _parse_from(self, reader: RangeReader, key: Hashable, size: int) -> _Index:
        index = await _read_index_from(reader, key, size, self.max_entries)
        self._put(index)
        return index

    def _loaded(self, key: Hashable, task: asyncio.Task[_Index]) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone

    def _get(self, key: Hashable) -> _Index | None:
        with self._lock:
            index = self._indexes.get(key)
            if index is not None:
                self._indexes.move_to_end(key)
            return index

    def _load(self, path: str) -> _Index:
        with self._parsing, open(path, "rb", buffering=0) as archive:
            key = archive_key(path, os.fstat(archive.fileno()))
            index = self._get(key)
            if index is None:
                index = _read_index(archive.fileno(), key, self.max_entries)
                self._put(index)
            return index

    def _put(self, index: _Index) -> None:
        with self._lock:
            self._indexes[index.key] = index
            self._cached_entries += len(index.names)
            while len(self._indexes) > self.max_archives or self._cached_entries > self.max_cached_entries:
                _, evicted = self._indexes.popitem(last=False)
                self._cached_entries -= len(evicted.names)


CACHE = IndexCache()


async def find_entry(
    archive_path: str | os.PathLike[str], name: str, *, cache: IndexCache | None = None
) -> EntryInfo | None:
    """The first entry named exactly ``name`` (a validated path), or None.

    A directory matches only as ``dir/`` and only if the archive has that entry. Raises
    FileNotFoundError when the archive is missing and ArchiveError when it cannot be served.
    """
    return await (cache or CACHE).find(os.fspath(archive_path), name)


async def find_entry_in(reader: RangeReader, name: str, *, cache: IndexCache | None = None) -> EntryInfo | None:
    """:func:`find_entry` for an archive read by byte ranges (an object in S3)."""
    return await (cache or CACHE).find_in(reader, name)


async def list_entries(archive_path: str | os.PathLike[str]) -> list[tuple[bytes, int]]:
    """Every entry of a local archive as (raw name, uncompressed size), from the cached index; raises as
    :func:`find_entry` does."""
    return (await CACHE.index(os.fspath(archive_path))).listing()


async def list_entries_in(reader: RangeReader) -> list[tuple[bytes, int]]:
    """:func:`list_entries` for an archive read by byte ranges."""
    return (await CACHE.index_in(reader)).listing()


class Member(NamedTuple):
    file: BinaryIO
    data_offset: int


def open_member(path: str, entry: EntryInfo) -> Member:
    """Open the archive and find the entry's data (blocking), refusing what cannot be sent faithfully.

    Everything that can go wrong before the first byte is checked here, while an error can
    still be a proper status.
    """
    _check_servable(entry)
    archive = open(path, "rb", buffering=0)  # handed to the caller, which closes it
    try:
        if archive_key(path, os.fstat(archive.fileno())) != entry.archive:
            raise ArchiveError("the archive changed since it was indexed")
        return Member(archive, _data_offset(archive.fileno(), entry))
    except BaseException:
        archive.close()
        raise


def _check_servable(entry: EntryInfo) -> None:
    if entry.flags & _ENCRYPTED:
        raise ArchiveError("encrypted entries are not supported")
    if entry.method not in (STORED, DEFLATED):
        raise ArchiveError(f"compression method {entry.method} is not supported")
    if entry.method == STORED and entry.compress_size != entry.file_size:
        raise ArchiveError("a stored entry whose sizes differ")


def _data_offset(fd: int, entry: EntryInfo) -> int:
    return _data_start(os.pread(fd, _LOCAL_SIZE, entry.header_offset), entry)


def _data_start(header: bytes, entry: EntryInfo) -> int:
    """Where the entry's data starts, from its LOCAL header (its first 30 bytes): its extra field
    (zip64, timestamps) differs from the central directory's, so the central record alone cannot say."""
    if len(header) < _LOCAL_SIZE or not header.startswith(b"PK\x03\x04"):
        raise ArchiveError("bad local file header")
    name_len, extra_len = _LOCAL_LENGTHS.unpack_from(header, 26)
    start = entry.header_offset + _LOCAL_SIZE + name_len + extra_len
    if start + entry.compress_size > entry.data_limit:
        raise ArchiveError("the entry's data overlaps the next entry")
    return start


async def open_remote_member(reader: RangeReader, entry: EntryInfo) -> AsyncGenerator[bytes, None]:
    """:func:`open_member` and :func:`entry_pieces` for an archive read by ranges: the entry's
    uncompressed bytes, checked as they go, from ONE read of its local header and data.

    Everything that can go wrong before the first byte (the entry, the version, the local header)
    is checked before this returns. Close the iterator when done (``contextlib.aclosing``).
    """
    _check_servable(entry)
    key, _ = await reader.version()
    if key != entry.archive:
        raise ArchiveError("the archive changed since it was indexed")
    # data_limit is where the next entry starts: the span holds the header, name, extra and data.
    raw = reader.stream(entry.header_offset, entry.data_limit - entry.header_offset)
    try:
        header = b""
        async for piece in raw:
            header += piece
            if len(header) >= _LOCAL_SIZE:
                break
        skip = _data_start(header, entry) - entry.header_offset
        while len(header) < skip:
            piece = await anext(raw, b"")
            if not piece:
                raise ArchiveError("the archive is truncated")
            header += piece
    except BaseException:
        await raw.aclose()
        raise
    return _remote_pieces(raw, header[skip:], entry)


async def _remote_pieces(
    raw: AsyncGenerator[bytes, None], first: bytes, entry: EntryInfo
) -> AsyncGenerator[bytes, None]:
    inflater = _Inflater() if entry.method == DEFLATED else None
    checker = _Checker(entry)
    remaining, data = entry.compress_size, first
    try:
        while True:
            data = data[:remaining]
            remaining -= len(data)
            for piece in inflater.feed(data) if inflater else (data,) if data else ():
                if passed := checker.push(piece):
                    yield passed
            if not remaining or (inflater and inflater.eof):
                break
            data = await anext(raw, b"")
            if not data:
                raise ArchiveError("the archive is truncated")
        for piece in inflater.finish() if inflater else ():
            if passed := checker.push(piece):
                yield passed
        if last := checker.finish():
            yield last
    finally:
        await raw.aclose()


def entry_pieces(fd: int, entry: EntryInfo, start: int) -> Iterator[bytes]:
    """The entry's uncompressed bytes in pieces of at most CHUNK, checked against the central directory."""
    raw = _read_range(fd, start, entry.compress_size)
    return _verified(raw if entry.method == STORED else _inflated(raw), entry)


def _read_range(fd: int, start: int, length: int) -> Iterator[bytes]:
    end = start + length
    while start < end:
        data = os.pread(fd, min(CHUNK, end - start), start)
        if not data:
            raise ArchiveError("the archive is truncated")
        start += len(data)
        yield data


class _Inflater:
    """Raw deflate fed piece by piece, at most CHUNK bytes out per step, however well the input
    compresses (zip bombs)."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)

    @property
    def eof(self) -> bool:
        return self._inflater.eof

    def feed(self, data: bytes) -> Iterator[bytes]:
        inflater = self._inflater
        try:
            while data and not inflater.eof:
                piece = inflater.decompress(data, CHUNK)
                data = inflater.unconsumed_tail
                if piece:
                    yield piece
        except zlib.error as exc:
            raise ArchiveError(f"corrupt deflate data: {exc}") from None

    def finish(self) -> Iterator[bytes]:
        """The input is used up; the inflater may still hold output it had no room for."""
        inflater = self._inflater
        try:
            while not inflater.eof and (piece := inflater.decompress(b"", CHUNK)):
                yield piece
        except zlib.error as exc:
            raise ArchiveError(f"corrupt deflate data: {exc}") from None
        if not inflater.eof:
            raise ArchiveError("the deflate data ends early")


def _inflated(compressed: Iterator[bytes]) -> Iterator[bytes]:
    inflater = _Inflater()
    for data in compressed:
        yield from inflater.feed(data)
        if inflater.eof:
            return
    yield from inflater.finish()


class _Checker:
    """Pieces checked on the way: size and CRC-32 against the central directory, the last piece held
    back until both match.

    Content-Length is already on the wire: an archive that lies must end in a short body,
    which every client notices, not in wrong bytes that look complete.
    """

    def __init__(self, entry: EntryInfo):
        self._entry = entry
        self._total = 0
        self._crc = 0
        self._held = b""

    def push(self, piece: bytes) -> bytes:
        """Take a piece; give back the one before it (b"" at first), now safe to send."""
        self._total += len(piece)
        if self._total > self._entry.file_size:
            raise ArchiveError("the entry holds more bytes than its declared size")
        self._crc = zlib.crc32(piece, self._crc)
        passed, self._held = self._held, piece
        return passed

    def finish(self) -> bytes:
        """The last piece, once size and CRC-32 match."""
        if self._total != self._entry.file_size:
            raise ArchiveError("the entry holds fewer bytes than its declared size")
        if self._crc != self._entry.crc:
            raise ArchiveError("CRC-32 mismatch")
        return self._held


def _verified(pieces: Iterator[bytes], entry: EntryInfo) -> Iterator[bytes]:
    """Pass the pieces on, holding the last one back until size and CRC-32 match the central directory."""
    checker = _Checker(entry)
    for piece in pieces:
        if passed := checker.push(piece):
            yield passed
    if last := checker.finish():
        yield last
