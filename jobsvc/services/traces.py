"""The live log append (``PATCH /jobs/:id/trace``): streamed to disk, refused once the job has ended.

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

from collections.abc import AsyncIterator
from dataclasses import dataclass

from jobsvc.domain import errors
from jobsvc.services import jobstate
from jobsvc.storage.repo import Repository
from jobsvc.storage.store import Store

MAX_PATCH = 64 * 1024 * 1024


@dataclass(frozen=True)
class Appended:
    """The outcome: whether the bytes went in, the log's length now, and the job's status."""

    accepted: bool
    size: int
    status: str


class _TraceTooLarge(Exception):
    """The log would go past the trace size limit: the job is dropped once the lock is released."""


def _too_large_body() -> errors.ApiError:
    return errors.ApiError(413, {"message": "413 Request Entity Too Large"})


async def append(
    repo: Repository,
    store: Store,
    job_id: int,
    start: int,
    chunks: AsyncIterator[bytes],
    content_length: int | None,
    size_limit: int,
) -> Appended:
    """Append a PATCH body at ``start``; 403 for a job no longer running, 413 past MAX_PATCH, 507 when full."""
    if content_length is not None and content_length > MAX_PATCH:
        raise _too_large_body()
    try:
        if content_length is not None and start + content_length > size_limit:
            raise _TraceTooLarge
        lock = store.trace_lock(job_id)
        waited = lock.locked()
        async with lock:
            return await _append_locked(repo, store, job_id, start, chunks, size_limit, waited)
    except _TraceTooLarge:
        await jobstate.drop_for_trace_size(repo, store, job_id)
        raise errors.ApiError(403, {"error": "403 Forbidden"}) from None


async def _append_locked(
    repo: Repository, store: Store, job_id: int, start: int, chunks: AsyncIterator[bytes], size_limit: int, waited: bool
) -> Appended:
    if waited:  # else nothing ran since the caller authenticated the job
        await jobstate.alive_status(repo, job_id)
    async with store.trace_appender(job_id) as log:
        if log.start != start:
            received = 0
            async for chunk in chunks:
                received += len(chunk)
                if received > MAX_PATCH:
                    raise _too_large_body()
            if start + received > size_limit:
                raise _TraceTooLarge
            return Appended(False, log.start, await jobstate.alive_status(repo, job_id))
        async for chunk in chunks:
            if log.appended + len(chunk) > MAX_PATCH:
                raise _too_large_body()
            if log.size + len(chunk) > size_limit:
                raise _TraceTooLarge
            await log.write(chunk)
        status = await jobstate.alive_status(repo, job_id)
        size = await log.commit()
        return Appended(True, size, status)
