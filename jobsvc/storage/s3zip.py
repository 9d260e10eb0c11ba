"""An artifact zip in S3 as :mod:`jobsvc.storage.zipindex` reads it: by ranged GETs of one version.

``version()`` HEADs the object once; every read after it carries that ETag as If-Match, so an object
replaced in the middle of a lookup or a download is an ArchiveError ("changed"), never a mix of two
archives. Finding an entry costs the HEAD, then (on a cache miss) a GET of the archive's tail and, unless
the central directory was in it, a GET of the central directory; reading the entry is one more GET.

A missing object raises FileNotFoundError, as a missing local file does. Any other failure to get the
bytes (the store unreachable, a connection cut mid-body, a timeout) is an OSError, so that callers treat
it like a local read error: a 5xx before the response starts, a cut connection after.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from jobsvc.storage.s3 import ObjectChanged, ObjectInfo, S3Store
from jobsvc.storage.zipindex import CHUNK, ArchiveError, ObjectKey


class S3ReadError(OSError):
    """The archive's bytes could not be read from the store."""


class S3Archive:
    """One stored archive, read by ranges (a :class:`jobsvc.storage.zipindex.RangeReader`)."""

    def __init__(self, store: S3Store, key: str):
        self.store = store
        self.key = key
        self._info: ObjectInfo | None = None

    async def version(self) -> tuple[ObjectKey, int]:
        if self._info is None:
            with _as_read_error(self.key):
                self._info = await self.store.head(self.key)
        return ObjectKey(self.store.url_of(self.key), self._info.size, self._info.etag), self._info.size

    async def read(self, start: int, length: int) -> bytes:
        return b"".join([piece async for piece in self.stream(start, length)])

    async def stream(self, start: int, length: int) -> AsyncGenerator[bytes, None]:
        etag = self._info.etag if self._info is not None else None
        pieces = self.store.read_range(self.key, start, start + length, if_match=etag, chunk_size=CHUNK)
        async with contextlib.aclosing(pieces):
            with _as_read_error(self.key):
                async for piece in pieces:
                    yield piece


@contextlib.contextmanager
def _as_read_error(key: str):
    try:
        yield
    except ObjectChanged:
        raise ArchiveError("the archive changed since it was indexed") from None
    except (ArchiveError, FileNotFoundError):
        raise
    except Exception as exc:  # botocore's, and aiohttp's for a body cut short (storage may not import aiohttp)
        raise S3ReadError(f"cannot read {key} from the store: {exc}") from exc
