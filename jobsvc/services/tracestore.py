"""The live-log seam: what the runner's appends, a job's end, an erase and the log download ask of a log.

Two implementations, picked by the blob store's kind (``jobsvc.services.traces.trace_store``):

* the directory store: a log is the file ``traces/<job>.log``, appended to in place and fdatasynced
  (:class:`jobsvc.services.traces.FileTraces`);
* S3: a live log is a run of chunks in the database, archived to the bucket when the job ends
  (:class:`jobsvc.services.tracechunks.ChunkedTraces`).

Both answer the runner exactly alike (GitLab's offset protocol, its 403/413/416 and the size limit) and
list a finished job's log as its ``trace`` artifact the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from jobsvc.domain import errors
from jobsvc.services import jobstate
from jobsvc.storage.blobs import Download
from jobsvc.storage.repo import Repository
from jobsvc.storage.unit import Unit

MAX_PATCH = 64 * 1024 * 1024


@dataclass(frozen=True)
class Appended:
    """The outcome: whether the bytes went in, the log's length now, and the job's status."""

    accepted: bool
    size: int
    status: str


class TraceTooLarge(Exception):
    """The log would go past the trace size limit: the job is dropped once nothing is held any more."""


def too_large_body() -> errors.ApiError:
    return errors.ApiError(413, {"message": "413 Request Entity Too Large"})


async def within_limits(
    repo: Repository,
    traces: TraceStore,
    job_id: int,
    start: int,
    content_length: int | None,
    size_limit: int,
    append: Callable[[], Awaitable[Appended]],
) -> Appended:
    """Run ``append`` under the limits every log store keeps: 413 for a declared body past MAX_PATCH; past the
    trace size limit (declared, or found by ``append`` while receiving: TraceTooLarge) the job is dropped
    (trace_size_exceeded) once the append has let go of everything it held, and the runner gets GitLab's 403."""
    if content_length is not None and content_length > MAX_PATCH:
        raise too_large_body()
    try:
        if content_length is not None and start + content_length > size_limit:
            raise TraceTooLarge
        return await append()
    except TraceTooLarge:
        await jobstate.drop_for_trace_size(repo, traces, job_id)
        raise errors.ApiError(403, {"error": "403 Forbidden"}) from None


class TraceStore(Protocol):
    async def append(
        self, job_id: int, start: int, chunks: AsyncIterator[bytes], content_length: int | None, size_limit: int
    ) -> Appended:
        """Append a PATCH body at ``start``; 403 for a job no longer running, 413 past MAX_PATCH, 507 when full."""
        ...

    async def archive(self, job_id: int) -> None:
        """After the job ended: its log becomes its ``trace`` artifact (job.log)."""
        ...

    def lock(self, job_id: int) -> AbstractAsyncContextManager[object]:
        """Held by an erase around its transaction and its removals, so an erased log cannot come back."""
        ...

    async def erase_live(self, unit: Unit, job_id: int) -> bool:
        """Inside the erase's transaction: drop the live log; whether the job had one."""
        ...

    def live_keys(self, job_id: int) -> list[str]:
        """Blob keys of the live log, to remove once the erase has committed."""
        ...

    async def download(self, job_id: int) -> Download | None:
        """The log to send (the archived one if there is one, else the live one); None: the job has none."""
        ...
