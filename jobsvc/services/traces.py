"""Logs in the directory store (``traces/<job>.log``), and which log store a deployment uses.

:func:`trace_store` picks by the blob store's kind: the directory store keeps each log as one file,
appended to in place (this module, :class:`FileTraces`); an S3 store keeps live logs as chunks in
the database and archives them to the bucket at the job's end (jobsvc.services.tracechunks, whose
docstring says why). Both implement jobsvc.services.tracestore.TraceStore.

The live log append (``PATCH /jobs/:id/trace``) here: streamed to disk, refused once the job has ended.
One append is one step under the job's trace lock (``Store.trace_lock``):

1. if the request had to wait for the lock, read the job again: if it ended or was erased
   meanwhile, GitLab's 403 (the caller authenticated it just before, with nothing in between);
2. compare ``Content-Range``'s start with the log's real length (416 when they differ, after the
   body was counted, since GitLab checks the size limit on ``start + body length`` first);
3. stream the body onto the log's end in chunks (``Store.trace_appender``: never more than a few
   hundred KiB in memory, whatever the body's size);
4. read the job once more, now that the whole body is there: if it ended meanwhile (a ``PUT``
   success, a cancel), the log is truncated back and the runner gets the same 403;
5. fdatasync, then 202: an acknowledged byte is on disk, as a committed state change is (the
   database runs with synchronous = FULL). Each log needs its own fdatasync, so appends of different
   jobs cannot share one; they run on the store's own pool of threads (``store._LOG_IO``), many at
   once, and the filesystem commits concurrent syncs together (bench/trace_bench.py measures it).

Steps 4 and 5 run at once (``TraceAppend.commit``): the read of step 4 starts once the body is in, the
last write and its fdatasync go to one worker thread meanwhile, and the 202 waits for both. A 403 from
step 4 still wins over any write error, and still truncates the log back (durably) under the lock.
A body declared at most ``CHUNK`` long (a runner's usual PATCH) is received whole first, and steps 2, 3
and 5 are then one log-thread hop (``TraceAppend.put_at``: open, measure, write, fdatasync), with step 4's
read alongside: opening a log for writing blocks for a while when other logs are being synced, so it is
never done on the event loop.

Why the lock closes the race with a job's end: everything that turns a job's log into its final
record takes the same lock, so it sees the log either before the append or after it, never half of
it. ``jobstate.archive_trace`` (after a ``PUT`` success or failure, a trace-size drop) measures the
log under it, so the ``job.log`` row always matches the file; an erase holds it across its
transaction and the file's removal, so an erased log cannot come back. A cancel does not touch the
log and does not wait: step 4 sees it. The price is that a client that sends its body slowly delays
its own job's archive or erase until the body is in (never another job's, and never the database).

Any failure part-way (disk full, the reserve reached, client gone, the limits below) truncates the log
back to its length before the append, so it stays an exact prefix of what the runner sent.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from jobsvc.domain.timefmt import now_iso
from jobsvc.services import jobstate
from jobsvc.services.tracechunks import ChunkedTraces
from jobsvc.services.tracestore import (
    MAX_PATCH,
    Appended,
    TraceStore,
    TraceTooLarge,
    too_large_body,
    within_limits,
)
from jobsvc.storage.blobs import BlobStore, LocalBlob
from jobsvc.storage.repo import Repository
from jobsvc.storage.store import CHUNK, Store
from jobsvc.storage.unit import Unit

__all__ = ["MAX_PATCH", "Appended", "FileTraces", "trace_store"]


def trace_store(repo: Repository, store: BlobStore) -> TraceStore:
    """The log store that goes with a blob store: files beside a directory store, database chunks with S3."""
    if isinstance(store, Store):  # kind "directory"
        return FileTraces(repo, store)
    return ChunkedTraces(repo, store)


class FileTraces:
    """Logs as files of the directory store; see the module docstring."""

    def __init__(self, repo: Repository, store: Store):
        self.repo = repo
        self.store = store

    async def append(
        self, job_id: int, start: int, chunks: AsyncIterator[bytes], content_length: int | None, size_limit: int
    ) -> Appended:
        async def locked() -> Appended:
            lock = self.store.trace_lock(job_id)
            waited = lock.locked()
            async with lock:
                return await self._append_locked(job_id, start, chunks, content_length, size_limit, waited)

        return await within_limits(self.repo, self, job_id, start, content_length, size_limit, locked)

    async def _append_locked(
        self,
        job_id: int,
        start: int,
        chunks: AsyncIterator[bytes],
        content_length: int | None,
        size_limit: int,
        waited: bool,
    ) -> Appended:
        repo = self.repo
        if waited:  # else nothing ran since the caller authenticated the job
            await jobstate.alive_status(repo, job_id)
        if content_length is not None and content_length <= CHUNK:
            return await self._append_small(job_id, start, chunks, size_limit)
        async with self.store.trace_appender(job_id) as log:
            if log.start != start:
                received = 0
                async for chunk in chunks:
                    received += len(chunk)
                    if received > MAX_PATCH:
                        raise too_large_body()
                if start + received > size_limit:
                    raise TraceTooLarge
                return Appended(False, log.start, await jobstate.alive_status(repo, job_id))
            async for chunk in chunks:
                if log.appended + len(chunk) > MAX_PATCH:
                    raise too_large_body()
                if log.size + len(chunk) > size_limit:
                    raise TraceTooLarge
                await log.write(chunk)
            size, status = await log.commit(jobstate.alive_status(repo, job_id))
            return Appended(True, size, status)

    async def _append_small(self, job_id: int, start: int, chunks: AsyncIterator[bytes], size_limit: int) -> Appended:
        """A body of at most CHUNK bytes (as declared): received whole, then steps 2 to 5 in one log-thread hop
        (``TraceAppend.put_at``) with the job's read alongside. The same checks in the same order as the
        streamed path: the body counted first, then the size limit, then the log's length (416), then the room."""
        body = bytearray()
        async for chunk in chunks:
            if len(body) + len(chunk) > MAX_PATCH:
                raise too_large_body()
            body += chunk
        if start + len(body) > size_limit:
            raise TraceTooLarge
        async with self.store.trace_appender(job_id, opened=False) as log:
            accepted, size, status = await log.put_at(start, bytes(body), jobstate.alive_status(self.repo, job_id))
            return Appended(accepted, size, status)

    async def archive(self, job_id: int) -> None:
        """Measure the log under its lock, so the ``job.log`` row always matches the file."""
        path = self.store.trace_path(job_id)
        async with self.store.trace_lock(job_id):
            digest_size = await asyncio.to_thread(_digest, path)
        if digest_size is None:
            return
        digest, size = digest_size
        key = self.store.trace_key(job_id)

        async def work(unit: Unit) -> None:
            project_id = await unit.jobs.project_id(job_id)
            if project_id is not None:
                await unit.artifacts.put_trace(job_id, project_id, size, digest, key, now_iso())

        await self.repo.write(work)

    def lock(self, job_id: int) -> AbstractAsyncContextManager[object]:
        return self.store.trace_lock(job_id)

    async def erase_live(self, unit: Unit, job_id: int) -> bool:
        return self.store.trace_path(job_id).exists()  # under lock(): the file goes once the erase commits

    def live_keys(self, job_id: int) -> list[str]:
        return [self.store.trace_key(job_id)]

    async def download(self, job_id: int) -> LocalBlob:
        return LocalBlob(self.store.trace_path(job_id))


def _digest(path: Path) -> tuple[str, int] | None:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with handle:
        hasher, size = hashlib.sha256(), 0
        while chunk := handle.read(1024 * 1024):
            hasher.update(chunk)
            size += len(chunk)
    return (hasher.hexdigest(), size) if size else None
