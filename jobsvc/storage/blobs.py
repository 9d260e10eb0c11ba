"""The blob store seam: where artifact files and logs live, as services and http see it.

Two implementations: the directory under ``--data-dir`` (:class:`jobsvc.storage.store.Store`, the default)
and an S3-compatible bucket (:class:`jobsvc.storage.s3blobs.S3Blobs`, ``--store-url s3://...``). Callers
hold a :class:`BlobStore` and never a path, except through a :class:`LocalBlob`, which only the directory
store hands out, so that its downloads keep the sendfile/pread path of :mod:`jobsvc.http.ranges`.

The rules every implementation keeps:

* An upload is *staged* (:meth:`BlobStore.receive`: streamed with a byte limit, counted and hashed, never
  held whole in memory), then either *installed* (:meth:`BlobStore.install`, which gives its key) or
  *discarded*. Whatever raises out of ``receive`` leaves nothing behind.
* A blob is complete and durable before the row that points at it commits; the caller removes it when
  that commit fails. Keys come from the store, never from a client.
* :meth:`BlobStore.list_artifacts` is what the orphan sweep compares with the rows: blobs no row points
  at that are older than the store's grace period are removed. It yields the keys in (byte) order, under
  ``artifacts/``, without holding a record per blob, so that the sweep can take it a batch at a time.
* A key's bytes never change once written, except the directory store's ``traces/<job>.log`` (a live log
  that grows); an S3 key is written once, so its ETag is a stable validator.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from jobsvc.storage.zipindex import RangeReader


class StoreError(Exception):
    """A key that the store did not make, or a file that should be there and is not."""


class StoreFull(Exception):
    """The disk is full (ENOSPC) or the file size limit was hit (EFBIG); nothing was half-written."""


class TooLarge(Exception):
    """An upload went past its size limit while streaming."""


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int
    sha256: str


class Staged(Protocol):
    """An upload received whole and durably, not yet installed under its key."""

    @property
    def size(self) -> int: ...

    @property
    def sha256(self) -> str: ...


@dataclass(frozen=True)
class LocalBlob:
    """A blob that is a file on this machine: served with sendfile from the path (opened by the sender)."""

    path: Path


class RemoteBlob(Protocol):
    """A blob read by byte ranges: its size, strong ETag (quoted) and Last-Modified (Unix seconds) as one
    version, and reads pinned to that version (a changed or vanished blob raises, never mixes versions)."""

    @property
    def size(self) -> int: ...

    @property
    def etag(self) -> str: ...

    @property
    def last_modified(self) -> float: ...

    def read_range(self, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """The bytes ``[start, end)`` in pieces; FileNotFoundError if the blob is gone, OSError if unreadable.
        Close it when stopping early (``contextlib.aclosing``)."""
        ...


class RemoteArchive(RemoteBlob, RangeReader, Protocol):
    """A remote blob that :mod:`jobsvc.storage.zipindex` can also read an entry out of."""


Download = LocalBlob | RemoteBlob


@dataclass(frozen=True)
class BlobInfo:
    """One listed blob: its key and when it was written (timezone-aware)."""

    key: str
    modified: datetime


class BlobStore(Protocol):
    kind: str  # "directory" or "s3": also picks the live-trace store (jobsvc.services.traces.trace_store)
    orphan_grace: timedelta  # how old a blob no row points at must be before the sweeper removes it
    orphan_grace_at_start: timedelta  # the same, on start

    async def start(self) -> None:
        """Make ready (directories, client) and clear what a crash left half-written."""
        ...

    async def close(self) -> None: ...

    async def receive(self, chunks: AsyncIterator[bytes], limit: int, *, job_id: int) -> Staged:
        """Stage an upload for ``job_id``; over ``limit`` bytes raises TooLarge, past the free-space reserve
        StoreFull. Nothing is left behind when this raises."""
        ...

    async def install(self, staged: Staged, job_id: int, file_format: str | None) -> StoredFile:
        """Put a staged upload in place under its key; after this, ``discard`` leaves it alone."""
        ...

    async def discard(self, staged: Staged) -> None:
        """Drop a staged upload that was not installed (a no-op once it was, and when called twice)."""
        ...

    async def put_bytes(self, job_id: int, data: bytes, file_format: str | None) -> StoredFile:
        """Store an artifact file from bytes in memory (small fixture archives)."""
        ...

    async def put_file(self, job_id: int, source: Path, file_format: str | None) -> StoredFile:
        """Store a copy of a local file as an artifact, read in chunks."""
        ...

    async def put_trace(self, job_id: int, data: bytes) -> StoredFile:
        """Store a job's whole log, as the file its ``trace`` artifact row points at."""
        ...

    async def put_trace_file(self, job_id: int, source: Path) -> StoredFile:
        """``put_trace`` from a local file, read in chunks."""
        ...

    def temp_file(self) -> Path:
        """A fresh local path for a file being built (the caller removes it)."""
        ...

    async def remove(self, key: str) -> None:
        """Remove a blob; a missing one is not an error."""
        ...

    def list_artifacts(self) -> AsyncIterator[BlobInfo]:
        """Every artifact blob under ``artifacts/``, in key order, for the orphan sweep (not the directory
        store's live logs)."""
        ...

    async def download(self, key: str) -> LocalBlob | RemoteArchive:
        """The blob to send; FileNotFoundError when it is missing (maybe only once it is read, for a LocalBlob)."""
        ...

    async def redirect_url(self, key: str, *, content_type: str, content_disposition: str) -> str | None:
        """A URL the client may fetch the whole blob from itself (a presigned GET), or None: send it."""
        ...

    async def sweep_stale_uploads(self) -> None:
        """Give up uploads a killed process left half-done (S3: pending multipart uploads)."""
        ...

    async def check(self) -> None:
        """Raise (OSError, or the store's own error, saying what) unless blobs can be stored now: cheap enough
        for every readiness probe (a directory: its folders and a tiny file made and removed; S3: a HEAD of the
        bucket)."""
        ...

    async def size_of(self, key: str) -> int | None:
        """The size of a blob, or None when it is missing (``jobsvc check``)."""
        ...


def open_blob_store(data_dir: Path, *, min_free: int = 0, store_url: str = "") -> BlobStore:
    """The blob store a deployment names (not started yet): the directory under ``data_dir``, or with a
    ``store_url`` the S3 bucket it names (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
    A bad URL, missing credentials or a missing ``s3`` extra are a ValueError that says so."""
    if not store_url:
        from jobsvc.storage.store import Store

        return Store(data_dir, min_free)
    from jobsvc.storage.s3url import credentials_from_env, parse_store_url

    location = parse_store_url(store_url)
    credentials = credentials_from_env()
    try:
        from jobsvc.storage.s3 import S3Store
        from jobsvc.storage.s3blobs import S3Blobs
    except ImportError as exc:
        raise ValueError(f"an s3:// store needs the s3 extra (pip install 'jobsvc[s3]'): {exc}") from None
    return S3Blobs(S3Store(location, credentials))
