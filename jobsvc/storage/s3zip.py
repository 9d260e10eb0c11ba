"""An artifact zip in S3 as :mod:`jobsvc.storage.zipindex` reads it: by ranged GETs of one version.

``version()`` HEADs the object once (none when it was handed the version: the S3 blob store keeps the
versions of the keys it has seen); every read after it carries that ETag as If-Match, so an object
replaced in the middle of a lookup or a download is an ArchiveError ("changed"), never a mix of two
archives. Finding an entry costs the HEAD, then (on a cache miss) a GET of the archive's tail and, unless
the central directory was in it, a GET of the central directory; reading the entry is one more GET.

Once ``version()`` has been awaited, an S3Archive is also a :class:`jobsvc.storage.blobs.RemoteArchive`
(size, ETag, Last-Modified and ``read_range``): what the S3 blob store hands out for every download.

A missing object raises FileNotFoundError, as a missing local file does. Any other failure to get the
bytes (the store unreachable, a connection cut mid-body, a timeout) is an OSError, so that callers treat
it like a local read error: a 5xx before the response starts, a cut connection after.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable

from jobsvc.storage.s3 import READ_CHUNK, ObjectChanged, ObjectInfo, S3Store
from jobsvc.storage.zipindex import CHUNK, ArchiveError, ObjectKey


class S3ReadError(OSError):
    """The archive's bytes could not be read from the store."""


class S3Archive:
    """One stored archive, read by ranges (a :class:`jobsvc.storage.zipindex.RangeReader`)."""

    def __init__(
        self,
        store: S3Store,
        key: str,
        info: ObjectInfo | None = None,
        forget: Callable[[str], object] | None = None,
    ):
        """``info``: the object's version as an earlier ``version()`` saw it (a write-once key keeps it), so
        that this one needs no HEAD; ``forget(key)`` is called when a read finds the object gone or changed."""
        self.store = store
        self.key = key
        self._info = info
        self._forget = forget

    async def version(self) -> tuple[ObjectKey, int]:
        if self._info is None:
            with as_read_error(self.key):
                self._info = await self.store.head(self.key)
        return ObjectKey(self.store.url_of(self.key), self._info.size, self._info.etag), self._info.size

    @property
    def info(self) -> ObjectInfo:
        if self._info is None:
            raise RuntimeError("version() was not awaited")
        return self._info

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def etag(self) -> str:
        return self.info.etag

    @property
    def last_modified(self) -> float:
        return self.info.last_modified.timestamp()

    async def read(self, start: int, length: int) -> bytes:
        return b"".join([piece async for piece in self.stream(start, length)])

    def stream(self, start: int, length: int) -> AsyncGenerator[bytes, None]:
        return self._pieces(start, start + length, CHUNK)

    def read_range(self, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """The bytes ``[start, end)`` of this version, from one ranged GET (If-Match: its ETag)."""
        return self._pieces(start, end, READ_CHUNK)

    async def _pieces(self, start: int, end: int, chunk_size: int) -> AsyncGenerator[bytes, None]:
        etag = self._info.etag if self._info is not None else None
        pieces = self.store.read_range(self.key, start, end, if_match=etag, chunk_size=chunk_size)
        async with contextlib.aclosing(pieces):  # type: ignore[type-var]
            with as_read_error(self.key):
                try:
                    async for piece in pieces:
                        yield piece
                except (FileNotFoundError, ObjectChanged):
                    if self._forget is not None:
                        self._forget(self.key)
                    raise


@contextlib.contextmanager
def as_read_error(key: str):
    """Failures to read ``key`` as the local store's would be: FileNotFoundError, ArchiveError, else OSError."""
    try:
        yield
    except ObjectChanged:
        raise ArchiveError("the archive changed since it was indexed") from None
    except (ArchiveError, FileNotFoundError):
        raise
    except Exception as exc:  # botocore's, and aiohttp's for a body cut short (storage may not import aiohttp)
        raise S3ReadError(f"cannot read {key} from the store: {exc}") from exc
