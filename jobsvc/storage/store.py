"""The file store: every on-disk path for artifacts and logs comes from here.

Layout under the data directory::

    tmp/<random>.part                   files being written; removed on start
    artifacts/<job id>/<sha256>.<ext>   job artifact files (archive, metadata, reports)
    traces/<job id>.log                 job logs (live and archived)

Names come from ids and content hashes, never from client input. A complete
file appears in one step: write to ``tmp/``, fsync, ``os.replace`` into place,
fsync the directory; only then does the caller commit the database row that
points at it (by its *key*, the path relative to the root).

This is the directory implementation of :class:`jobsvc.storage.blobs.BlobStore` (the async methods);
the blocking ones under them are this module's own. Its downloads are :class:`LocalBlob` paths, which
:mod:`jobsvc.http.ranges` sends with sendfile or pread. Its live logs are the ``traces/`` files, appended
to in place (:meth:`Store.trace_appender`); see jobsvc.services.traces.

Free-space reserve: with ``min_free`` set, an upload or log append that would
leave less than that on the store's filesystem is refused (``StoreFull``)
before it writes anything, and an upload is counted against the room measured
when it starts, so a disk filled by artifacts still has room for the
database's state changes and deletes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import hashlib
import logging
import os
import re
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiofiles

from jobsvc.storage.blobs import BlobInfo, LocalBlob, Staged, StoredFile, StoreError, StoreFull, TooLarge
from jobsvc.storage.db import free_bytes

log = logging.getLogger(__name__)

_KEY = re.compile(r"\A(?:artifacts/[0-9]+/[0-9a-f]{64}\.[a-z0-9]+(?:\.[a-z0-9]+)?|traces/[0-9]+\.log)\Z")
_EXTENSIONS = {"zip": "zip", "gzip": "gz", "raw": "raw"}
LIST_DIRS = 256  # job directories listed (and their files stat'ed) per trip to a thread


__all__ = ["CHUNK", "Incoming", "Store", "StoredFile", "StoreError", "StoreFull", "TooLarge", "TraceAppend"]

_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Incoming:
    """An upload written to ``tmp/`` and fsynced, not yet in place."""

    path: Path
    size: int
    sha256: str

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Store:
    kind = "directory"
    # An installed file gets its row within moments (its mtime is when its last byte was written); on start
    # no upload is in flight, so every file without a row goes (one process owns the data directory).
    orphan_grace = timedelta(hours=1)
    orphan_grace_at_start = timedelta(0)

    def __init__(self, root: Path, min_free: int = 0):
        self.root = root
        self.tmp = root / "tmp"
        self._traces = root / "traces"
        self._trace_paths: dict[int, Path] = {}
        self.min_free = min_free
        self._trace_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    def prepare(self) -> None:
        """Create the directories and remove what a crash left half-written."""
        for sub in ("tmp", "artifacts", "traces"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.glob("*.part"):
            log.warning("removing unfinished file %s", leftover)
            leftover.unlink(missing_ok=True)

    def room(self) -> int | None:
        """Bytes uploads and appends may still write before reaching the reserve; None: no reserve."""
        if self.min_free <= 0:
            return None
        return free_bytes(self.root) - self.min_free

    def path(self, key: str) -> Path:
        """The file of a key this store made; anything else is refused."""
        if not _KEY.match(key):
            raise StoreError(f"not a store key: {key!r}")
        return self.root / key

    @staticmethod
    def artifact_key(job_id: int, sha256: str, file_format: str | None) -> str:
        return f"artifacts/{int(job_id)}/{sha256}.{_EXTENSIONS.get(file_format or 'raw', 'raw')}"

    @staticmethod
    def trace_key(job_id: int) -> str:
        return f"traces/{int(job_id)}.log"

    def _temp_path(self) -> Path:
        return self.tmp / f"{uuid.uuid4().hex}.part"

    def _install(self, temp: Path, key: str) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)
        _fsync_dir(target.parent)

    def _put_bytes(self, job_id: int, data: bytes, file_format: str | None) -> StoredFile:
        """Store an artifact file from bytes in memory (blocking; for small fixture archives)."""
        digest = hashlib.sha256(data).hexdigest()
        key = self.artifact_key(job_id, digest, file_format)
        self._write_whole(key, data)
        return StoredFile(key, len(data), digest)

    def _put_trace(self, job_id: int, data: bytes) -> StoredFile:
        """Replace a job's whole log (blocking)."""
        key = self.trace_key(job_id)
        self._write_whole(key, data)
        return StoredFile(key, len(data), hashlib.sha256(data).hexdigest())

    def _put_file(self, job_id: int, source: Path, file_format: str | None) -> StoredFile:
        """Store a copy of an existing file as an artifact, read in chunks (blocking)."""
        temp, size, digest = self._copy(source)
        return self._install_upload(Incoming(temp, size, digest), job_id, file_format)

    def _put_trace_file(self, job_id: int, source: Path) -> StoredFile:
        """Replace a job's log with a copy of a file, read in chunks (blocking)."""
        temp, size, digest = self._copy(source)
        key = self.trace_key(job_id)
        try:
            self._install(temp, key)
        finally:
            temp.unlink(missing_ok=True)
        return StoredFile(key, size, digest)

    def _copy(self, source: Path) -> tuple[Path, int, str]:
        temp = self._temp_path()
        hasher, size = hashlib.sha256(), 0
        try:
            with open(source, "rb") as src, open(temp, "xb") as dst:
                while chunk := src.read(1024 * 1024):
                    hasher.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return temp, size, hasher.hexdigest()

    def temp_file(self) -> Path:
        """A fresh path in ``tmp/`` for a file being built (removed on start if left behind)."""
        return self._temp_path()

    def _write_whole(self, key: str, data: bytes) -> None:
        temp = self._temp_path()
        try:
            with open(temp, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self._install(temp, key)
        finally:
            temp.unlink(missing_ok=True)

    async def receive(self, chunks: AsyncIterator[bytes], limit: int, *, job_id: int = 0) -> Incoming:
        """Stream an upload into ``tmp/``, counting and hashing; over ``limit`` bytes raises TooLarge.

        Nothing is left behind when this raises (too large, disk full, client gone).
        """
        room = self.room()
        if room is not None and room <= 0:
            raise StoreFull("the free-space reserve is reached")
        temp = self._temp_path()
        hasher, size = hashlib.sha256(), 0
        try:
            async with aiofiles.open(temp, "xb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(limit)
                    if room is not None and size > room:
                        raise StoreFull("the upload would go past the free-space reserve")
                    hasher.update(chunk)
                    await handle.write(chunk)
                await handle.flush()
                await asyncio.to_thread(os.fsync, handle.fileno())
        except OSError as exc:
            temp.unlink(missing_ok=True)
            if exc.errno in _FULL:
                raise StoreFull(str(exc)) from None
            raise
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return Incoming(temp, size, hasher.hexdigest())

    def _install_upload(self, incoming: Incoming, job_id: int, file_format: str | None) -> StoredFile:
        """Move a received upload to its final, content-addressed name (blocking)."""
        key = self.artifact_key(job_id, incoming.sha256, file_format)
        try:
            self._install(incoming.path, key)
        finally:
            incoming.path.unlink(missing_ok=True)
        return StoredFile(key, incoming.size, incoming.sha256)

    # --- the BlobStore interface ---------------------------------------------------------

    async def start(self) -> None:
        self.prepare()

    async def close(self) -> None:
        pass

    async def install(self, staged: Staged, job_id: int, file_format: str | None) -> StoredFile:
        return await asyncio.to_thread(self._install_upload, _own(staged), job_id, file_format)

    async def discard(self, staged: Staged) -> None:
        _own(staged).discard()

    async def put_bytes(self, job_id: int, data: bytes, file_format: str | None) -> StoredFile:
        return await asyncio.to_thread(self._put_bytes, job_id, data, file_format)

    async def put_file(self, job_id: int, source: Path, file_format: str | None) -> StoredFile:
        return await asyncio.to_thread(self._put_file, job_id, source, file_format)

    async def put_trace(self, job_id: int, data: bytes) -> StoredFile:
        return await asyncio.to_thread(self._put_trace, job_id, data)

    async def put_trace_file(self, job_id: int, source: Path) -> StoredFile:
        return await asyncio.to_thread(self._put_trace_file, job_id, source)

    async def remove(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    async def list_artifacts(self) -> AsyncIterator[BlobInfo]:
        """The artifact files (``artifacts/<job>/<name>``) the store made, in key order; others are not its own
        and stay. Read LIST_DIRS job directories at a time, each batch on a thread (the stats are blocking):
        what it holds meanwhile is the job directories' names, not a record per file."""
        names = await asyncio.to_thread(self._job_dirs)
        for start in range(0, len(names), LIST_DIRS):
            for info in await asyncio.to_thread(self._list_dirs, names[start : start + LIST_DIRS]):
                yield info

    def _job_dirs(self) -> list[str]:
        """The names of the directories under ``artifacts/``, in the order of the keys under them."""
        try:
            with os.scandir(self.root / "artifacts") as entries:
                names = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []
        names.sort(key=lambda name: name + "/")  # "artifacts/1/..." < "artifacts/10/...": "/" sorts before digits
        return names

    def _list_dirs(self, names: list[str]) -> list[BlobInfo]:
        found = []
        for name in names:
            folder = self.root / "artifacts" / name
            try:
                with os.scandir(folder) as entries:
                    files = sorted((entry for entry in entries if entry.is_file()), key=lambda entry: entry.name)
            except FileNotFoundError:
                continue
            for entry in files:
                key = f"artifacts/{name}/{entry.name}"
                if not _KEY.match(key):
                    log.warning("not a file the store made, left alone: %s", entry.path)
                    continue
                try:
                    modified = datetime.fromtimestamp(entry.stat().st_mtime, UTC)
                except FileNotFoundError:
                    continue
                found.append(BlobInfo(key, modified))
        return found

    async def download(self, key: str) -> LocalBlob:
        return LocalBlob(self.path(key))

    async def redirect_url(self, key: str, *, content_type: str, content_disposition: str) -> str | None:
        return None

    async def sweep_stale_uploads(self) -> None:
        """Nothing to do while running: ``tmp/`` holds only uploads in flight (prepare() clears it on start)."""

    async def check(self) -> None:
        await asyncio.to_thread(self._check)

    def _check(self) -> None:
        for sub in ("tmp", "artifacts", "traces"):
            if not (self.root / sub).is_dir():
                raise StoreError(f"{self.root / sub} is not a directory")
        probe = self._temp_path()  # in tmp/, so a crash between the two steps leaves what start removes
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)

    async def size_of(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(os.stat, self.path(key))).st_size
        except FileNotFoundError:
            return None

    def trace_files(self) -> list[tuple[int, str]]:
        """The job id and key of every log file under ``traces/`` (blocking; ``jobsvc check``)."""
        found = []
        for path in (self.root / "traces").glob("*.log"):
            key = path.relative_to(self.root).as_posix()
            if _KEY.match(key):
                found.append((int(path.stem), key))
        return sorted(found)

    # --- logs --------------------------------------------------------------------------

    def trace_path(self, job_id: int) -> Path:
        """``path(trace_key(job_id))``: a key made from an int always matches, so it is not matched again.

        Remembered per job (a few thousand at most): a tail poller asks for the same path many times a
        second, and a Path that was used once keeps its string form."""
        path = self._trace_paths.get(job_id)
        if path is None:
            if len(self._trace_paths) >= 4096:
                self._trace_paths.clear()
            path = self._trace_paths[job_id] = self._traces / f"{int(job_id)}.log"
        return path

    def trace_lock(self, job_id: int) -> asyncio.Lock:
        """The per-job lock every writer of a log holds (appends, archiving, erasing)."""
        lock = self._trace_locks.get(job_id)
        if lock is None:
            lock = self._trace_locks[job_id] = asyncio.Lock()
        return lock

    @contextlib.asynccontextmanager
    async def trace_appender(self, job_id: int, *, opened: bool = True) -> AsyncIterator[TraceAppend]:
        """An append to a job's log, opened at its current end; the caller holds ``trace_lock(job_id)``.

        Unless ``commit()`` (or ``put_at``) succeeded, leaving the block truncates the log back to where it
        was, so it stays an exact prefix of what the runner sent, whatever failed (full disk, client gone,
        refused). The log is opened on the log thread (an open for writing can block for a while while other
        logs are being synced), before the block, or with ``opened=False`` by ``put_at`` in its own hop.
        """
        appender = TraceAppend(self.trace_path(job_id), self.room)
        try:
            if opened:
                await appender.open()
            yield appender
        finally:
            await appender.close()


def _own(staged: Staged) -> Incoming:
    if not isinstance(staged, Incoming):
        raise StoreError(f"not an upload this store received: {staged!r}")
    return staged


CHUNK = 256 * 1024
# Log writes and their fdatasync run here, not in the default executor (a handful of threads): each log
# needs its own fdatasync, and with many in flight at once the filesystem commits them together (ext4's
# journal batches concurrent syncs), so concurrent appends of different jobs share the cost of a flush.
_LOG_IO = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="jobsvc-log")


def _datasync(fd: int) -> None:
    os.fdatasync(fd)


class TraceAppend:
    """Bytes going onto the end of one log: buffered up to CHUNK, written as they come, fdatasynced on commit.

    At most about two CHUNKs are held in memory whatever the body's size. Opening, writes and syncs run on a
    log thread; a cancelled caller still waits for the one in flight before the log is truncated back.
    """

    def __init__(self, path: Path, room: Callable[[], int | None]):
        self.path = path
        self.start = 0  # the log's length before this append, once opened
        self.written = 0
        self._fd: int | None = None
        self._created = False
        self._room_of = room
        self._room: int | None = None
        self._buffer = bytearray()
        self._pending: asyncio.Future[Any] | None = None
        self._committed = False

    @property
    def appended(self) -> int:
        """Bytes passed to ``write`` so far (written or still buffered)."""
        return self.written + len(self._buffer)

    @property
    def size(self) -> int:
        """The log's length with what was passed to ``write`` so far."""
        return self.start + self.appended

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self, create: bool = True) -> None:
        """Open the log for appending and measure it, and the room left (a log thread). With ``create=False``
        a missing log stays missing (its length is 0)."""
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:  # the first append makes the log (one syscall in the usual case)
            if not create:
                return
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._created = True
        self.start = os.fstat(self._fd).st_size
        self._room = self._room_of()

    async def write(self, data: bytes) -> None:
        self._take(data)
        if len(self._buffer) >= CHUNK:
            await self._run(self._flush)

    def _take(self, data: bytes) -> None:
        if self._room is not None and self.appended + len(data) > self._room:
            raise StoreFull("the append would go past the free-space reserve")
        self._buffer += data

    async def commit(self, check: Awaitable[_T]) -> tuple[int, _T]:
        """Write what is buffered and fdatasync while ``check`` (the caller's last word on the append) runs.

        Committed only when both succeeded: then the bytes survive a crash; returns the new size and what
        ``check`` returned. If ``check`` raises, its error is raised (before any of the write's) and leaving
        the block truncates the log back, as for any failure. One log-thread hop does the write and the
        sync of a body that fits in the buffer, and the check's wait overlaps the sync's."""
        _, outcome = await self._alongside(self._flush_and_sync, check)
        self._committed = True
        return self.start + self.written, outcome

    async def put_at(self, start: int, data: bytes, check: Awaitable[_T]) -> tuple[bool, int, _T]:
        """A whole small body in ONE log-thread hop (open, measure, write, fdatasync), ``check`` alongside.

        Only from ``trace_appender(opened=False)``. Written only if the log's length is ``start``: returns
        whether it was, the log's length now, and what ``check`` returned; ``commit``'s rules otherwise."""
        matched, outcome = await self._alongside(lambda: self._put_at(start, data), check)
        self._committed = matched
        return matched, self.start + self.written, outcome

    def _put_at(self, start: int, data: bytes) -> bool:
        self._open(create=start == 0)  # no log and a start past 0: nothing to make, a mismatch
        if self._fd is None or self.start != start:
            return False
        self._take(data)
        self._flush_and_sync()
        return True

    async def _alongside(self, fn: Callable[[], _R], check: Awaitable[_T]) -> tuple[_R, _T]:
        """``fn`` on a log thread while ``check`` runs on the loop; ``check``'s error first, if both fail."""
        checking = asyncio.ensure_future(check)
        try:
            done = await self._run(fn)
        except BaseException as exc:
            if not checking.done():
                checking.cancel()
            await asyncio.wait([checking])
            refused = None if checking.cancelled() else checking.exception()
            if refused is not None and isinstance(exc, Exception):  # not for a cancel of our own
                raise refused from None
            raise
        return done, await checking

    async def _run(self, fn: Callable[[], _R]) -> _R:
        pending = self._pending = asyncio.get_running_loop().run_in_executor(_LOG_IO, fn)
        return await asyncio.shield(pending)

    def _flush(self) -> None:
        assert self._fd is not None
        data, self._buffer = bytes(self._buffer), bytearray()
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                self.written += written
                view = view[written:]
        except OSError as exc:
            if exc.errno in _FULL:
                raise StoreFull(str(exc)) from None
            raise

    def _flush_and_sync(self) -> None:
        assert self._fd is not None
        if self._buffer:
            self._flush()
        try:
            _datasync(self._fd)
        except OSError as exc:
            if exc.errno in _FULL:
                raise StoreFull(str(exc)) from None
            raise

    async def close(self) -> None:
        if self._pending is not None and not self._pending.done():
            await asyncio.wait([self._pending])
        if self._fd is None:  # never opened (or no log to open): nothing was written
            return
        try:
            if not self._committed:
                self._buffer.clear()
                if self.written:  # bytes reached the file: cut them, durably (a power loss must not revive them)
                    os.ftruncate(self._fd, self.start)
                    try:
                        _datasync(self._fd)
                    except OSError as exc:  # the error that made us roll back is the one to report
                        log.warning("could not sync the truncated log %s: %s", self.path, exc)
                if self._created and self.start == 0:
                    self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
