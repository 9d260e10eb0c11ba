"""One file out of a stored artifact zip, served the way GitLab Workhorse's ``gitlab-zip-cat`` serves it.

The requested path is a lookup *key*: it is compared byte for byte with the entry names in
the archive's central directory, never joined to a filesystem path, and nothing is ever
extracted to disk. So ``../x``, ``./x``, a leading ``/`` or a backslash only match an entry
with exactly that name, and a symlink entry comes back as its stored bytes (the link target).

The central directory is parsed here rather than by :mod:`zipfile` because:

* names must compare as raw bytes, as Go's ``archive/zip`` does (zipfile decodes names
  without the UTF-8 flag as cp437, so such an entry would never match);
* this machine's CPython 3.11.7 predates the zipfile fixes for CVE-2024-0450 (overlapping
  entries) and CVE-2025-8291 (zip64 end-record offset), so the end records are checked for
  consistency, an entry's data may not run into the next entry, and the central directory is
  capped the way Workhorse caps it (100 MiB up to a 1 GiB archive, a tenth of the size beyond)
  before a byte of it is read;
* parsing is the expensive part (tens of milliseconds for 10,000 entries), so the parsed
  directory is kept in a small LRU cache keyed by the archive's identity (path, size, mtime, inode).

Streaming: the entry's declared uncompressed size goes out as ``Content-Length`` before the
body. STORED members are sent with ``loop.sendfile`` straight from the archive; DEFLATED ones
are inflated in a worker thread that runs at most a few 64 KiB pieces ahead of the socket.
If the archive turns out to lie (more or fewer bytes than declared, a CRC mismatch), the
connection is cut, so the client sees a short body instead of wrong bytes that look complete.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import re
import string
import struct
import threading
import unicodedata
import zlib
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from aiohttp import hdrs, web

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
READ_AHEAD = 8  # pieces a producer thread may run ahead of the socket: 512 KiB per download at most
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


class InvalidEntryPath(ValueError):
    """The requested path fails ``Artifacts::Path#valid?`` (a NUL byte, or not UTF-8): answer 400."""


class ArchiveError(Exception):
    """The archive cannot be served faithfully: not a zip, corrupt, lying, or changed on disk."""


class ArchiveLimitError(ArchiveError):
    """The central directory is bigger than the limits allow (Workhorse's ``CodeLimitsReached``)."""


# ---------------------------------------------------------------------------------------------
# The requested path


_UNDECODED = re.compile(r"%(?!2[5Ff])[0-9A-Fa-f]{2}")


def validate_entry_path(path: str) -> str:
    """GitLab's ``Artifacts::Path#valid?``: no NUL byte and valid UTF-8; nothing else is refused.

    A ``str`` is invalid UTF-8 only when it holds lone surrogates (``surrogateescape``);
    how aiohttp shows undecodable bytes is handled by :func:`request_entry_path`.
    """
    if "\x00" in path:
        raise InvalidEntryPath("the path contains a NUL byte")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEntryPath("the path is not valid UTF-8") from None
    return path


def request_entry_path(request: web.BaseRequest, key: str) -> str:
    """The validated artifact path of a route whose LAST segment is ``{key:[\\s\\S]+}``.

    (With ``{key:.+}`` a name holding a line break could not be requested at all: "." stops there.)

    aiohttp leaves percent-escapes that are not UTF-8 undecoded: ``%ff`` reaches ``match_info``
    as the text ``%ff``, exactly like a literal ``%25ff``. Only the still-encoded form
    (``rel_url.path_safe``, where ``%`` itself stays ``%25``) tells them apart.
    """
    value = request.match_info[key]
    if _UNDECODED.search(_encoded_tail(request.rel_url.path_safe, value)):
        raise InvalidEntryPath("the path is not valid UTF-8")
    return validate_entry_path(value)


def _encoded_tail(path_safe: str, value: str) -> str:
    """The end of ``path_safe`` that aiohttp decoded into ``value`` (it turns only %2F and %25 back)."""
    end = len(path_safe)
    for char in reversed(value):
        end -= 1 if path_safe[end - 1] == char else 3
    return path_safe[end:]


# ---------------------------------------------------------------------------------------------
# Content-Type: Go's mime.TypeByExtension


# Go's builtinTypesLower (src/mime/type.go); it wins over the system table, as in Go.
_GO_BUILTIN = {
    ".avif": "image/avif",
    ".css": "text/css; charset=utf-8",
    ".gif": "image/gif",
    ".htm": "text/html; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".ico": "image/x-icon",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".mjs": "text/javascript; charset=utf-8",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".webp": "image/webp",
    ".xml": "text/xml; charset=utf-8",
}


def _with_charset(content_type: str) -> str:
    """Go's setExtensionType: a text/* type without a charset gets ``charset=utf-8``."""
    return f"{content_type}; charset=utf-8" if content_type.startswith("text/") else content_type


# Go adds the host's mime.types/globs2 to its table; Python's built-in defaults stand in for
# them (MimeTypes() reads no host file), so the answer does not depend on the machine.
_TYPES = {ext: _with_charset(kind) for ext, kind in mimetypes.MimeTypes().types_map[True].items()} | _GO_BUILTIN


def content_type_for(name: str) -> str:
    """The Content-Type Workhorse sends for an entry: by extension, else application/octet-stream."""
    return _TYPES.get(_go_ext(name).lower(), "application/octet-stream")


def _go_ext(name: str) -> str:
    """Go's ``filepath.Ext``: from the last dot of the last path element, or empty."""
    dot = name.rfind(".")
    return name[dot:] if dot > name.rfind("/") else ""


def _go_basename(name: str) -> str:
    """Go's ``filepath.Base``: ``dir/`` gives ``dir``, an empty name ``.``, only slashes ``/``."""
    stripped = name.rstrip("/")
    if not stripped:
        return "/" if name else "."
    return stripped[stripped.rfind("/") + 1 :]


# ---------------------------------------------------------------------------------------------
# Content-Disposition


_RAILS_QUOTED_SAFE = frozenset(" " + string.ascii_letters + string.digits + "!#$+.^_`|~-")
_RFC5987_SAFE = frozenset(string.ascii_letters + string.digits + "!#$&+.^_`|~-")
# What aiohttp refuses in a header (C0 controls, DEL) or cannot encode (lone surrogates), plus C1.
_UNSENDABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# I18n.transliterate's default approximations that are not "the letter without its accent".
_I18N_SPECIAL = {
    "Æ": "AE", "Ð": "D", "×": "x", "Ø": "O", "Þ": "Th", "ß": "ss", "ẞ": "SS", "æ": "ae", "ð": "d", "ø": "o",
    "þ": "th", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "ı": "i", "Ĳ": "IJ", "ĳ": "ij", "ĸ": "k", "Ŀ": "L",
    "ŀ": "l", "Ł": "L", "ł": "l", "ŉ": "'n", "Ŋ": "NG", "ŋ": "ng", "Œ": "OE", "œ": "oe", "Ŧ": "T", "ŧ": "t",
}  # fmt: skip


def content_disposition(filename: str, *, rfc5987: bool) -> str:
    """An ``attachment`` disposition that aiohttp will always send.

    ``rfc5987=True``: Rails' ``ActionDispatch::Http::ContentDisposition`` (the archive download):
    ``attachment; filename="<ascii>"; filename*=UTF-8''<utf-8>``, both parts percent-escaped,
    the quoted one after ``I18n.transliterate`` (``é`` → ``e``, unknown letters → ``?`` → ``%3F``).

    ``rfc5987=False``: Workhorse's single-file form, ``attachment; filename="<name>"`` with ``\\``
    and ``"`` backslash-escaped; control characters are dropped, since aiohttp refuses them.
    """
    if rfc5987:
        quoted = _percent_escape(_transliterate(filename), _RAILS_QUOTED_SAFE)
        return f"attachment; filename=\"{quoted}\"; filename*=UTF-8''{_percent_escape(filename, _RFC5987_SAFE)}"
    plain = _UNSENDABLE.sub("", filename).replace("\\", "\\\\").replace('"', '\\"')
    return f'attachment; filename="{plain}"'


def _percent_escape(text: str, safe: frozenset[str]) -> str:
    """Rails' ``percent_escape``: every UTF-8 byte of a character outside ``safe`` becomes %XX."""
    return "".join(
        char if char in safe else "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
        for char in text
    )


def _transliterate(text: str) -> str:
    """``I18n.transliterate`` with its default table (Latin-1 Supplement and Latin Extended-A)."""
    return "".join(_approximate(char) for char in text)


def _approximate(char: str) -> str:
    if char < "\x80":
        return char
    if char in _I18N_SPECIAL:
        return _I18N_SPECIAL[char]
    if "\u00c0" <= char <= "\u017e" and char != "\u00f7":
        return unicodedata.normalize("NFD", char)[0]
    return "?"


# ---------------------------------------------------------------------------------------------
# The central directory


class ArchiveKey(NamedTuple):
    """Which file an index was read from; a replaced or rewritten archive gets a new key."""

    path: str
    size: int
    mtime_ns: int
    inode: int


def _archive_key(path: str, st: os.stat_result) -> ArchiveKey:
    return ArchiveKey(path, st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """One central-directory entry, with what streaming it needs."""

    name: str
    archive: ArchiveKey
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
    count: int
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


def _find_end(fd: int, size: int) -> _End:
    """Read the end of central directory record, and the zip64 one when its locator is there."""
    tail_at = max(0, size - _EOCD.size - 0xFFFF)
    tail = os.pread(fd, size - tail_at, tail_at)
    pos = tail.rfind(b"PK\x05\x06", 0, len(tail) - _EOCD.size + 4)
    if pos < 0:
        raise ArchiveError("not a zip archive")
    _, disk, cd_disk, _, count, cd_size, cd_offset, comment_len = _EOCD.unpack_from(tail, pos)
    if pos + _EOCD.size + comment_len > len(tail):  # Go refuses a truncated comment too
        raise ArchiveError("not a zip archive")
    end = _End(tail_at + pos, count, cd_size, cd_offset)
    if end.at >= _LOCATOR.size:
        locator = os.pread(fd, _LOCATOR.size, end.at - _LOCATOR.size)
        if locator.startswith(b"PK\x06\x07"):
            end, disk, cd_disk = _find_end64(fd, end.at - _LOCATOR.size, locator)
    if disk or cd_disk:
        raise ArchiveError("multi-disk archives are not supported")
    return end


def _find_end64(fd: int, locator_at: int, locator: bytes) -> tuple[_End, int, int]:
    """The zip64 end record, which must end exactly where its locator starts (the CVE-2025-8291 check)."""
    _, record_disk, record_at, disks = _LOCATOR.unpack(locator)
    if record_disk or disks > 1:
        raise ArchiveError("multi-disk archives are not supported")
    record = os.pread(fd, _EOCD64.size, record_at)
    if len(record) != _EOCD64.size or not record.startswith(b"PK\x06\x06"):
        raise ArchiveError("bad zip64 end of central directory record")
    _, record_size, _, _, disk, cd_disk, _, count, cd_size, cd_offset = _EOCD64.unpack(record)
    if record_size < _EOCD64.size - 12 or record_at + 12 + record_size != locator_at:
        raise ArchiveError("the zip64 end record is not where its locator says")
    return _End(record_at, count, cd_size, cd_offset), disk, cd_disk


@dataclass(frozen=True)
class _Index:
    """A parsed central directory: its raw bytes, name → record position (first wins), entry starts."""

    key: ArchiveKey
    central: bytes
    names: dict[bytes, int]
    starts: array[int]  # sorted distinct local header offsets
    cd_offset: int

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


def _read_index(fd: int, key: ArchiveKey, max_entries: int) -> _Index:
    """Parse the central directory (blocking), refusing it before reading it if it is over the limits."""
    end = _find_end(fd, key.size)
    if end.count > max_entries:
        raise ArchiveLimitError(f"{end.count} entries; at most {max_entries} are served")
    if end.cd_size > central_directory_limit(key.size):
        raise ArchiveLimitError(f"a {end.cd_size}-byte central directory is over the limit")
    if end.cd_offset + end.cd_size != end.at:
        raise ArchiveError("the central directory is not where the end record says")
    if end.count * _CENTRAL.size > end.cd_size:
        raise ArchiveError("the record count does not fit in the central directory")
    central = os.pread(fd, end.cd_size, end.cd_offset)
    if len(central) != end.cd_size:
        raise ArchiveError("the central directory is truncated")
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


class IndexCache:
    """Parsed central directories, least recently used evicted first.

    Bounded by archives and by entries overall (a parsed entry costs a few hundred bytes).
    Hits happen on the event loop; a miss parses in a worker thread, one parse at a time,
    so a burst of requests for a freshly uploaded archive parses it once.
    """

    def __init__(self, max_archives: int = 16, max_entries: int = 200_000, max_cached_entries: int = 500_000):
        self.max_archives = max_archives
        self.max_entries = max_entries  # per archive: more and the archive is refused
        self.max_cached_entries = max_cached_entries
        self._indexes: OrderedDict[ArchiveKey, _Index] = OrderedDict()
        self._cached_entries = 0
        self._lock = threading.Lock()  # guards the dict; held only briefly
        self._parsing = threading.Lock()

    async def find(self, path: str, name: str) -> EntryInfo | None:
        index = self._get(_archive_key(path, os.stat(path)))
        if index is None:
            index = await asyncio.to_thread(self._load, path)
        return index.find(name)

    def _get(self, key: ArchiveKey) -> _Index | None:
        with self._lock:
            index = self._indexes.get(key)
            if index is not None:
                self._indexes.move_to_end(key)
            return index

    def _load(self, path: str) -> _Index:
        with self._parsing, open(path, "rb", buffering=0) as archive:
            key = _archive_key(path, os.fstat(archive.fileno()))
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


# ---------------------------------------------------------------------------------------------
# Streaming


class _Member(NamedTuple):
    file: BinaryIO
    data_offset: int


async def stream_entry(
    request: web.BaseRequest,
    archive_path: str | os.PathLike[str],
    entry: EntryInfo,
    *,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Answer 200 with the entry's bytes (HEAD: headers only); Range is ignored, as in GitLab.

    Raises (ArchiveError, FileNotFoundError) only before anything is sent. Once the headers are
    out, a broken archive or a vanished client ends in a cut connection, never in an exception:
    an error page written after the headers would land inside the body. ``headers`` are extra
    headers; the type, disposition and security headers set here take precedence.
    """
    member = await asyncio.to_thread(_open_member, os.fspath(archive_path), entry)
    with member.file:
        response = _entry_response(entry, headers)
        try:
            await response.prepare(request)
            if request.method != hdrs.METH_HEAD and entry.file_size:
                await _send_body(request, response, member, entry)
            await response.write_eof()
        except ConnectionError as exc:
            log.debug("client went away while sending %r: %s", entry.name, exc)
            _abort(request, response)
        except (ArchiveError, OSError) as exc:
            log.warning("aborted sending %r from %s: %s", entry.name, entry.archive.path, exc)
            _abort(request, response)
    return response


def _open_member(path: str, entry: EntryInfo) -> _Member:
    """Open the archive and find the entry's data (blocking), refusing what cannot be sent faithfully.

    Everything that can go wrong before the first byte is checked here, while an error can
    still be a proper status.
    """
    if entry.flags & _ENCRYPTED:
        raise ArchiveError("encrypted entries are not supported")
    if entry.method not in (STORED, DEFLATED):
        raise ArchiveError(f"compression method {entry.method} is not supported")
    if entry.method == STORED and entry.compress_size != entry.file_size:
        raise ArchiveError("a stored entry whose sizes differ")
    archive = open(path, "rb", buffering=0)  # handed to the caller, which closes it
    try:
        if _archive_key(path, os.fstat(archive.fileno())) != entry.archive:
            raise ArchiveError("the archive changed since it was indexed")
        return _Member(archive, _data_offset(archive.fileno(), entry))
    except BaseException:
        archive.close()
        raise


def _data_offset(fd: int, entry: EntryInfo) -> int:
    """Where the entry's data starts, from its LOCAL header: its extra field (zip64, timestamps)
    differs from the central directory's, so the central record alone cannot say."""
    header = os.pread(fd, _LOCAL_SIZE, entry.header_offset)
    if len(header) != _LOCAL_SIZE or not header.startswith(b"PK\x03\x04"):
        raise ArchiveError("bad local file header")
    name_len, extra_len = _LOCAL_LENGTHS.unpack_from(header, 26)
    start = entry.header_offset + _LOCAL_SIZE + name_len + extra_len
    if start + entry.compress_size > entry.data_limit:
        raise ArchiveError("the entry's data overlaps the next entry")
    return start


def _entry_response(entry: EntryInfo, headers: Mapping[str, str] | None) -> web.StreamResponse:
    response = web.StreamResponse(headers=headers)
    response.headers[hdrs.CONTENT_TYPE] = content_type_for(entry.name)
    response.headers[hdrs.CONTENT_DISPOSITION] = content_disposition(_go_basename(entry.name), rfc5987=False)
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.content_length = entry.file_size
    return response


async def _send_body(request: web.BaseRequest, response: web.StreamResponse, member: _Member, entry: EntryInfo) -> None:
    if entry.method == STORED and await _sendfile(request, member, entry.file_size):
        return
    start = member.data_offset
    producer = _Producer(member.file.fileno(), lambda fd: _entry_pieces(fd, entry, start))
    try:
        while (piece := await producer.next()) is not None:
            await response.write(piece)
    finally:
        producer.stop()


async def _sendfile(request: web.BaseRequest, member: _Member, count: int) -> bool:
    """Zero-copy for a STORED entry: the kernel sends the byte range straight from the archive.

    False where the loop has no sendfile (uvloop); the caller then reads in a thread.
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away")
    try:
        await asyncio.get_running_loop().sendfile(transport, member.file, member.data_offset, count)
    except NotImplementedError:
        return False
    return True


def _abort(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Cut the connection: with Content-Length already sent, a short body is the honest failure."""
    response.force_close()
    if request.transport is not None:
        request.transport.close()


class _Producer:
    """Runs a blocking piece source in its own thread, at most READ_AHEAD pieces ahead of the writer.

    The thread waits on a semaphore of credits, never on the event loop, so ``stop()`` frees it
    at once: after a disconnect or a cancellation it ends within one piece. It reads through
    its own duplicate of the archive descriptor and closes it on the way out, so neither side
    can close a descriptor the other still uses.
    """

    def __init__(self, fd: int, pieces: Callable[[int], Iterator[bytes]]):
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes | Exception | None] = asyncio.Queue()
        self._credits = threading.Semaphore(READ_AHEAD)
        self._stopping = threading.Event()
        own_fd = os.dup(fd)
        try:
            threading.Thread(target=self._run, args=(own_fd, pieces), name="zipentry-producer", daemon=True).start()
        except BaseException:
            os.close(own_fd)
            raise

    def _run(self, fd: int, pieces: Callable[[int], Iterator[bytes]]) -> None:
        try:
            for piece in pieces(fd):
                self._credits.acquire()
                if self._stopping.is_set():
                    return
                self._deliver(piece)
            self._deliver(None)
        except Exception as exc:  # handed to the writer, which aborts the download
            self._deliver(exc)
        finally:
            os.close(fd)

    def _deliver(self, item: bytes | Exception | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stopping.set()

    async def next(self) -> bytes | None:
        """The next piece; None at the end. Raises what the source raised."""
        item = await self._queue.get()
        self._credits.release()
        if isinstance(item, Exception):
            raise item
        return item

    def stop(self) -> None:
        self._stopping.set()
        self._credits.release()


def _entry_pieces(fd: int, entry: EntryInfo, start: int) -> Iterator[bytes]:
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


def _inflated(compressed: Iterator[bytes]) -> Iterator[bytes]:
    """Raw deflate, at most CHUNK bytes out per step, however well the input compresses (zip bombs)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        for data in compressed:
            while data and not inflater.eof:
                piece = inflater.decompress(data, CHUNK)
                data = inflater.unconsumed_tail
                if piece:
                    yield piece
            if inflater.eof:
                return
        # The input is used up; the inflater may still hold output it had no room for.
        while not inflater.eof and (piece := inflater.decompress(b"", CHUNK)):
            yield piece
    except zlib.error as exc:
        raise ArchiveError(f"corrupt deflate data: {exc}") from None
    if not inflater.eof:
        raise ArchiveError("the deflate data ends early")


def _verified(pieces: Iterator[bytes], entry: EntryInfo) -> Iterator[bytes]:
    """Pass the pieces on, holding the last one back until size and CRC-32 match the central directory.

    Content-Length is already on the wire: an archive that lies must end in a short body,
    which every client notices, not in wrong bytes that look complete.
    """
    total, crc, held = 0, 0, b""
    for piece in pieces:
        total += len(piece)
        if total > entry.file_size:
            raise ArchiveError("the entry holds more bytes than its declared size")
        crc = zlib.crc32(piece, crc)
        if held:
            yield held
        held = piece
    if total != entry.file_size:
        raise ArchiveError("the entry holds fewer bytes than its declared size")
    if crc != entry.crc:
        raise ArchiveError("CRC-32 mismatch")
    if held:
        yield held
