"""Live logs as chunks in the database, archived to the bucket when the job ends: the log store of a
deployment whose blobs are in S3 (``--store-url s3://...``).

Design, after GitLab's live traces (``lib/gitlab/ci/trace/chunked_io.rb``, ``Ci::BuildTraceChunk``):

* A live log is a run of chunks in the ``trace_chunks`` table: chunk N holds bytes from N * 128 KiB, at most
  128 KiB; an append fills the last chunk and then adds whole ones (jobsvc.storage.queries.traces).
* One append (``PATCH /jobs/:id/trace``) is: the body is received first, counted against the limits
  (413 past MAX_PATCH, the job dropped past the trace size limit) and spooled (in memory up to
  SPOOL_IN_MEMORY, beyond it in a temporary file: never held whole); then ONE write transaction reads
  the job (GitLab's 403 once it has ended or was erased), compares Content-Range's start with the
  log's size (416 when they differ) and writes the chunks. That transaction is what serializes the
  appends of a job across processes and hosts: SQLite's BEGIN IMMEDIATE, and on PostgreSQL the
  backend's write lock (each UPDATE of the last chunk also checks the length it read). When it
  commits (SQLite: synchronous = FULL), the 202 goes out: an acknowledged byte is durable.
* When the job ends (``jobstate.archive_trace``): the chunks are read in order and streamed into one new
  object in the bucket; then one transaction checks that the log's size is still what was archived,
  writes the ``trace`` artifact row (job.log) pointing at the object and deletes the chunks, in that
  order. If the commit fails, the object is deleted; if the log changed, it is archived again.
* Reads (``GET .../trace``, with or without Range): the archived object if the job has one, else the
  chunks, as a blob read by ranges (:class:`LiveLog`: size, ETag and Last-Modified from the last chunk; a
  log only grows, so size names its bytes). A read that finds the chunks gone half-way (archived
  meanwhile) goes on from the object, whose bytes are the same.
* An erase deletes the chunks in its own transaction, with the rows.

Why not the file scheme of the directory store, or an object per append: an S3 object cannot be appended
to, and rewriting it per append costs the whole log each time; chunks on local disk would tie a job to one
host, and per-process locks do not serialize processes. The database is already what every process shares
and what makes a state change durable, and a chunk is small enough to rewrite on each append (at most
128 KiB, what GitLab's own database chunk store does). Cheap enough: an append costs one transaction; an
archive, one object per finished job.

A job canceled while it runs keeps its chunks (its log is read from them): like the directory store, which
lists no job.log for it, nothing archives it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import IO

from jobsvc.domain import errors
from jobsvc.domain.timefmt import now_iso
from jobsvc.services import artifacts, jobstate
from jobsvc.services.tracestore import MAX_PATCH, Appended, TraceTooLarge, too_large_body, within_limits
from jobsvc.storage.blobs import BlobStore, LocalBlob, RemoteArchive, StoreError, StoreFull
from jobsvc.storage.db import DatabaseFull
from jobsvc.storage.repo import Repository
from jobsvc.storage.unit import Unit

log = logging.getLogger(__name__)

SPOOL_IN_MEMORY = 1024 * 1024
READ_BATCH = 8  # chunks per query when a log is read: 1 MiB
ARCHIVE_ATTEMPTS = 3
_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


class ChunkedTraces:
    """Live logs in the database, archived to ``store``; see the module docstring."""

    def __init__(self, repo: Repository, store: BlobStore):
        self.repo = repo
        self.store = store

    # --- appends -----------------------------------------------------------------------------

    async def append(
        self, job_id: int, start: int, chunks: AsyncIterator[bytes], content_length: int | None, size_limit: int
    ) -> Appended:
        async def spooled() -> Appended:
            with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY) as body:
                return await self._append(job_id, start, chunks, size_limit, body)

        return await within_limits(self.repo, self, job_id, start, content_length, size_limit, spooled)

    async def _append(
        self, job_id: int, start: int, chunks: AsyncIterator[bytes], size_limit: int, body: IO[bytes]
    ) -> Appended:
        # a start that is not the log's end is a 416 whatever happens: count the body, keep nothing of it
        at_end = await self.repo.traces.size(job_id) == start
        received = await _receive(chunks, body if at_end else None, start, size_limit)

        async def work(unit: Unit) -> Appended:
            job = await unit.jobs.status(job_id)
            if job is None:
                raise errors.forbidden()
            jobstate.check_alive(job)  # the job may have ended while the body was arriving
            size = await unit.traces.size(job_id)
            if not at_end or size != start:
                return Appended(False, size, job["status"])
            body.seek(0)  # this may run again after a rollback
            await unit.traces.append(job_id, body, now_iso())
            return Appended(True, start + received, job["status"])

        return await self.repo.write(work)

    # --- the job's end -----------------------------------------------------------------------

    async def archive(self, job_id: int) -> None:
        """Never fails the job's end over the store: a log that cannot be archived stays readable where it is."""
        try:
            await self._archive(job_id)
        except DatabaseFull:
            raise
        except Exception:
            log.exception("job %d: the log could not be archived to the store; it stays in the database", job_id)

    async def _archive(self, job_id: int) -> None:
        for _ in range(ARCHIVE_ATTEMPTS):
            if await self._archive_once(job_id):
                return
        log.warning("job %d: its log kept changing while it was archived; it stays in the database", job_id)

    async def _archive_once(self, job_id: int) -> bool:
        """One try: the object, then the row and the chunks' delete in one transaction; False: try again."""
        size = await self.repo.traces.size(job_id)
        if not size:
            return True
        staged = await self.store.receive(self._log_pieces(job_id, size), size, job_id=job_id)
        stored = await self.store.install(staged, job_id, None)

        async def work(unit: Unit) -> list[str] | None:
            if await unit.traces.size(job_id) != size:
                return None  # erased meanwhile (grown it cannot be, once the job ended)
            project_id = await unit.jobs.project_id(job_id)
            if project_id is None:
                return None
            old = await unit.artifacts.trace_key(job_id)
            await unit.artifacts.put_trace(job_id, project_id, stored.size, stored.sha256, stored.key, now_iso())
            await unit.traces.delete(job_id)
            return [old] if old is not None and old != stored.key else []

        try:
            replaced = await self.repo.write(work)
        except BaseException:
            await artifacts.remove_unless_known(self.repo, self.store, stored.key)
            raise
        if replaced is None:
            await self.store.remove(stored.key)
            return False
        await artifacts.remove_files(self.store, replaced)
        return True

    async def _log_pieces(self, job_id: int, size: int) -> AsyncIterator[bytes]:
        position = 0
        while position < size:
            rows = await self.repo.traces.read(job_id, position, READ_BATCH)
            if not rows or rows[0]["start"] != position:
                raise StoreError(f"job {job_id}: the log's chunks went away while it was archived")
            for row in rows:
                if row["start"] != position:
                    raise StoreError(f"job {job_id}: the log's chunks are not contiguous at {position}")
                data = bytes(row["data"])[: size - position]
                yield data
                position += len(data)
                if position >= size:
                    return

    # --- erasing -----------------------------------------------------------------------------

    def lock(self, job_id: int) -> AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()  # the erase's transaction is enough: the chunks go with the rows

    async def erase_live(self, unit: Unit, job_id: int) -> bool:
        return await unit.traces.delete(job_id) > 0

    def live_keys(self, job_id: int) -> list[str]:
        return []

    # --- reads -------------------------------------------------------------------------------

    async def download(self, job_id: int) -> RemoteArchive | LocalBlob | LiveLog | None:
        for _ in range(2):  # the second look: archived between reading the row and reading the chunks
            key = await self.repo.artifacts.trace_key(job_id)
            if key is not None:
                return await self.store.download(key)
            tail = await self.repo.traces.tail(job_id)
            if tail is not None:
                return LiveLog(self, job_id, tail["size"], datetime.fromisoformat(tail["updated_at"]).timestamp())
        return None

    async def _archived(self, job_id: int) -> RemoteArchive:
        key = await self.repo.artifacts.trace_key(job_id)
        if key is None:
            raise FileNotFoundError(f"job {job_id}: the log is gone")
        blob = await self.store.download(key)
        if isinstance(blob, LocalBlob):
            raise StoreError("the chunked log store needs a blob store read by ranges")
        return blob


class LiveLog:
    """A live log as a blob read by ranges (jobsvc.storage.blobs.RemoteBlob), as its chunks were at ``size``."""

    def __init__(self, traces: ChunkedTraces, job_id: int, size: int, last_modified: float):
        self._traces = traces
        self.job_id = job_id
        self.size = size
        self.last_modified = last_modified
        # a log only grows, so its length names its bytes; another store's ETag never looks like this one
        self.etag = f'"trace-{job_id}-{size:x}"'

    async def read_range(self, start: int, end: int) -> AsyncGenerator[bytes, None]:
        end = min(end, self.size)
        position = start
        while position < end:
            rows = await self._traces.repo.traces.read(self.job_id, position, READ_BATCH)
            before = position
            for row in rows:
                piece = bytes(row["data"])[position - row["start"] : end - row["start"]]
                if row["start"] > position or not piece:
                    break
                yield piece
                position += len(piece)
                if position >= end:
                    return
            if position == before:
                break  # the chunks are gone: archived (or erased) since this read began
        if position < end:
            archived = await self._traces._archived(self.job_id)
            async with contextlib.aclosing(archived.read_range(position, end)) as pieces:
                async for piece in pieces:
                    yield piece


async def _receive(chunks: AsyncIterator[bytes], body: IO[bytes] | None, start: int, size_limit: int) -> int:
    """Count (and with ``body``, spool) a PATCH body; the limits as the directory store checks them."""
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > MAX_PATCH:
                raise too_large_body()
            if body is not None:
                if start + received > size_limit:
                    raise TraceTooLarge
                body.write(chunk)
    except OSError as exc:
        if exc.errno in _FULL:
            raise StoreFull(str(exc)) from None
        raise
    if start + received > size_limit:
        raise TraceTooLarge
    return received
