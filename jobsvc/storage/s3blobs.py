"""The blob store in an S3-compatible bucket (``--store-url s3://...``): jobsvc.storage.blobs.BlobStore
over :class:`jobsvc.storage.s3.S3Store`.

Keys are ``artifacts/<job id>/<32 random hex digits>``: every blob gets a key of its own, written once and
never replaced, so an object's ETag is a stable validator for Range/If-Range and a cache key for its zip
index, and an upload that fails or is refused can be deleted without touching anything else. The
archived log of a job (its ``trace`` artifact) is such a blob too; live logs are not here but in the
database (jobsvc.services.tracechunks).

* Uploads stream straight into the bucket (:meth:`S3Store.upload`: one PutObject, or a multipart upload
  of at most one part in memory), so ``receive`` already writes the blob under its final key and
  ``install`` has nothing left to move; a staged upload that is never installed is deleted by ``discard``.
* Removals wait for S3's answer but never raise: a blob that could not be deleted is an orphan, which the
  sweeper removes later. So are blobs whose row never committed (a crash): ``list_artifacts`` lists the
  bucket under ``artifacts/``, and what no row points at goes once it is older than ORPHAN_GRACE, on
  start and by the sweeper (other processes may be uploading: S3 reports a multipart upload's object
  with the time the upload began). Multipart uploads pending longer than that are aborted too.
* Downloads: ``download`` returns an :class:`jobsvc.storage.s3zip.S3Archive` with the object's size, ETag
  and Last-Modified, whose every read carries that ETag as If-Match. They come from a HEAD the first time a
  process downloads a key, and from then on from a bounded cache (VERSION_CACHE keys): a key is written once,
  so its version never changes while it exists, and a log tail or an archive's entry costs one ranged GET,
  not a HEAD and a GET. ``remove`` forgets the key; an object another process removed fails the GET
  as it would have failed the HEAD (FileNotFoundError, before anything is sent).
  ``redirect_url`` gives a presigned GET when the store URL says ``presign=1``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import tempfile
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from jobsvc.storage.blobs import BlobInfo, Staged, StoredFile, StoreError
from jobsvc.storage.s3 import ObjectInfo, S3Store
from jobsvc.storage.s3zip import S3Archive, as_read_error

log = logging.getLogger(__name__)

ORPHAN_GRACE = timedelta(days=1)
FILE_CHUNK = 1024 * 1024
VERSION_CACHE = 4096  # keys whose HEAD answer a process keeps (a few hundred bytes each)


@dataclass
class S3Staged:
    """An upload already complete in the bucket under its own key; deleted unless installed."""

    key: str
    size: int
    sha256: str
    etag: str
    installed: bool = False
    discarded: bool = False


class S3Blobs:
    kind = "s3"
    orphan_grace = ORPHAN_GRACE
    orphan_grace_at_start = ORPHAN_GRACE

    def __init__(self, s3: S3Store, *, version_cache: int = VERSION_CACHE):
        self.s3 = s3
        self._versions: OrderedDict[str, ObjectInfo] = OrderedDict()
        self._version_cache = version_cache

    @staticmethod
    def new_key(job_id: int) -> str:
        return f"artifacts/{int(job_id)}/{secrets.token_hex(16)}"

    async def start(self) -> None:
        """Open the client and check the bucket; a store that cannot be used is an OSError saying why."""
        await self.s3.open()
        try:
            await self.s3.check()
        except Exception as exc:
            await self.s3.close()
            raise OSError(f"cannot use the store {self.s3.location}: {exc}") from exc
        except BaseException:
            await self.s3.close()
            raise

    async def close(self) -> None:
        await self.s3.close()

    # --- writes ------------------------------------------------------------------------------

    async def receive(self, chunks: AsyncIterator[bytes], limit: int, *, job_id: int) -> S3Staged:
        uploaded = await self.s3.upload(self.new_key(job_id), chunks, limit)
        return S3Staged(uploaded.key, uploaded.size, uploaded.sha256, uploaded.etag)

    async def install(self, staged: Staged, job_id: int, file_format: str | None) -> StoredFile:
        upload = _own(staged)
        upload.installed = True
        return StoredFile(upload.key, upload.size, upload.sha256)

    async def discard(self, staged: Staged) -> None:
        upload = _own(staged)
        if not upload.installed and not upload.discarded:
            upload.discarded = True
            await self.remove(upload.key)

    async def put_bytes(self, job_id: int, data: bytes, file_format: str | None) -> StoredFile:
        uploaded = await self.s3.put_bytes(self.new_key(job_id), data)
        return StoredFile(uploaded.key, uploaded.size, uploaded.sha256)

    async def put_file(self, job_id: int, source: Path, file_format: str | None) -> StoredFile:
        size = (await asyncio.to_thread(os.stat, source)).st_size
        uploaded = await self.s3.upload(self.new_key(job_id), _file_chunks(source), size)
        return StoredFile(uploaded.key, uploaded.size, uploaded.sha256)

    async def put_trace(self, job_id: int, data: bytes) -> StoredFile:
        return await self.put_bytes(job_id, data, None)

    async def put_trace_file(self, job_id: int, source: Path) -> StoredFile:
        return await self.put_file(job_id, source, None)

    def temp_file(self) -> Path:
        return Path(tempfile.gettempdir()) / f"jobsvc-{uuid.uuid4().hex}.part"

    async def remove(self, key: str) -> None:
        """Delete the object, waiting for the answer; a failure is logged (the orphan sweep retries it), and a
        cancelled caller does not stop the delete."""
        self._forget(key)
        await asyncio.shield(self.s3.run_to_end(self.s3.delete(key)))

    # --- listing and sweeping ----------------------------------------------------------------

    async def list_artifacts(self) -> AsyncIterator[BlobInfo]:
        async for info in self.s3.list_objects("artifacts/"):
            yield BlobInfo(info.key, info.last_modified)

    async def sweep_stale_uploads(self) -> None:
        for key in await self.s3.abort_stale_uploads(self.orphan_grace):
            log.warning("aborted a multipart upload left pending for %s", key)

    async def check(self) -> None:
        """A HEAD of the bucket: reachable, and these credentials may use it."""
        await self.s3.check()

    async def size_of(self, key: str) -> int | None:
        try:
            return (await self.s3.head(key)).size
        except FileNotFoundError:
            return None

    # --- reads -------------------------------------------------------------------------------

    async def download(self, key: str) -> S3Archive:
        known = self._versions.get(key)
        if known is not None:
            self._versions.move_to_end(key)
            return S3Archive(self.s3, key, known, self._forget)
        archive = S3Archive(self.s3, key, forget=self._forget)
        await archive.version()  # the HEAD: FileNotFoundError when the object is missing
        self._versions[key] = archive.info
        if len(self._versions) > self._version_cache:
            self._versions.popitem(last=False)
        return archive

    def _forget(self, key: str) -> None:
        self._versions.pop(key, None)

    async def redirect_url(self, key: str, *, content_type: str, content_disposition: str) -> str | None:
        if not self.s3.location.presign:
            return None
        with as_read_error(key):
            return await self.s3.presigned_url(key, content_type=content_type, content_disposition=content_disposition)


def _own(staged: Staged) -> S3Staged:
    if not isinstance(staged, S3Staged):
        raise StoreError(f"not an upload this store received: {staged!r}")
    return staged


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, FILE_CHUNK):
            yield chunk
    finally:
        handle.close()
