"""One file out of a stored artifact zip, served over HTTP the way GitLab Workhorse serves it.

The requested path is validated as ``Artifacts::Path#valid?`` does and then used only as a
lookup key in the archive's index (:mod:`jobsvc.storage.zipindex`). So ``../x``, ``./x``, a
leading ``/`` or a backslash only match an entry with exactly that name, and a symlink entry
comes back as its stored bytes (the link target).

Streaming: the entry's declared uncompressed size goes out as ``Content-Length`` before the
body. STORED members are sent with ``loop.sendfile`` straight from the archive; DEFLATED ones
are inflated in a worker thread that runs at most a few 64 KiB pieces ahead of the socket.
If the archive turns out to lie (more or fewer bytes than declared, a CRC mismatch), the
connection is cut, so the client sees a short body instead of wrong bytes that look complete.

An archive in an object store (a :class:`jobsvc.storage.zipindex.RangeReader`) is served the same
way by :func:`stream_remote_entry`: its member comes from one ranged GET, inflated on the loop
(at most 64 KiB out per step) as the pieces arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import os
import re
import string
import threading
import unicodedata
from collections.abc import Awaitable, Callable, Iterator, Mapping

from aiohttp import hdrs, web

from jobsvc.storage.zipindex import (
    STORED,
    ArchiveError,
    EntryInfo,
    Member,
    RangeReader,
    entry_pieces,
    open_member,
    open_remote_member,
)

log = logging.getLogger(__name__)

READ_AHEAD = 8  # pieces a producer thread may run ahead of the socket: 512 KiB per download at most


class InvalidEntryPath(ValueError):
    """The requested path fails ``Artifacts::Path#valid?`` (a NUL byte, or not UTF-8): answer 400."""


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


def request_entry_path(request: web.Request, key: str) -> str:
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


_RAILS_QUOTED_SAFE = frozenset(" " + string.ascii_letters + string.digits + "!#$+.^_`|~-")


# What aiohttp refuses in a header (C0 controls, DEL) or cannot encode (lone surrogates), plus C1.
_UNSENDABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


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
    member = await asyncio.to_thread(open_member, os.fspath(archive_path), entry)
    with member.file:
        return await _respond(request, entry, headers, lambda response: _send_body(request, response, member, entry))


async def stream_remote_entry(
    request: web.BaseRequest,
    reader: RangeReader,
    entry: EntryInfo,
    *,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """:func:`stream_entry` for an archive read by byte ranges (an object in S3); the same answers."""
    pieces = await open_remote_member(reader, entry)
    async with contextlib.aclosing(pieces):

        async def send(response: web.StreamResponse) -> None:
            async for piece in pieces:
                await response.write(piece)

        return await _respond(request, entry, headers, send)


async def _respond(
    request: web.BaseRequest,
    entry: EntryInfo,
    headers: Mapping[str, str] | None,
    send_body: Callable[[web.StreamResponse], Awaitable[None]],
) -> web.StreamResponse:
    response = _entry_response(entry, headers)
    try:
        await response.prepare(request)
        if request.method != hdrs.METH_HEAD and entry.file_size:
            await send_body(response)
        await response.write_eof()
    except ConnectionError as exc:
        log.debug("client went away while sending %r: %s", entry.name, exc)
        _abort(request, response)
    except (ArchiveError, OSError) as exc:
        log.warning("aborted sending %r from %s: %s", entry.name, entry.archive, exc)
        _abort(request, response)
    return response


def _entry_response(entry: EntryInfo, headers: Mapping[str, str] | None) -> web.StreamResponse:
    response = web.StreamResponse(headers=headers)
    response.headers[hdrs.CONTENT_TYPE] = content_type_for(entry.name)
    response.headers[hdrs.CONTENT_DISPOSITION] = content_disposition(_go_basename(entry.name), rfc5987=False)
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.content_length = entry.file_size
    return response


async def _send_body(request: web.BaseRequest, response: web.StreamResponse, member: Member, entry: EntryInfo) -> None:
    if entry.method == STORED and await _sendfile(request, member, entry.file_size):
        return
    start = member.data_offset
    producer = _Producer(member.file.fileno(), lambda fd: entry_pieces(fd, entry, start))
    try:
        while (piece := await producer.next()) is not None:
            await response.write(piece)
    finally:
        producer.stop()


async def _sendfile(request: web.BaseRequest, member: Member, count: int) -> bool:
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
            threading.Thread(target=self._run, args=(own_fd, pieces), name="zipstream-producer", daemon=True).start()
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


_RFC5987_SAFE = frozenset(string.ascii_letters + string.digits + "!#$&+.^_`|~-")


# I18n.transliterate's default approximations that are not "the letter without its accent".
_I18N_SPECIAL = {
    "Æ": "AE", "Ð": "D", "×": "x", "Ø": "O", "Þ": "Th", "ß": "ss", "ẞ": "SS", "æ": "ae", "ð": "d", "ø": "o",
    "þ": "th", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "ı": "i", "Ĳ": "IJ", "ĳ": "ij", "ĸ": "k", "Ŀ": "L",
    "ŀ": "l", "Ł": "L", "ł": "l", "ŉ": "'n", "Ŋ": "NG", "ŋ": "ng", "Œ": "OE", "œ": "oe", "Ŧ": "T", "ŧ": "t",
}  # fmt: skip
