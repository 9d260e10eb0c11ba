"""What a request may reuse from an earlier one: values read from the database, kept until it changes.

Every entry is valid for one database state, the backend's ``data_version()`` read when the request
began (before anything of it was read, so what it read is at least that new). The first request that
finds another version drops everything: any commit, of this process or another one on the same SQLite
file, empties every cache, so a revoked token, a changed membership or a cancelled job is seen by the
very next request. A backend that cannot tell (PostgreSQL, written to by other processes unseen)
answers None, and nothing is cached.

An entry may also carry the moment it stops being true without any write (a runner going offline two
hours after its last contact, an archive expiring): past it, the entry is a miss.

The caches are bounded in bytes (their owners say what an entry weighs); when full, the oldest
entries go first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from aiohttp import web

from jobsvc.http.keys import CREDENTIALS, DB, JOB_JSON, RECORDS

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_CREDENTIALS = 10_000  # tokens (and tokens that found nothing)
MAX_RECORDS = 10_000  # (project, caller) pairs, pipelines
MAX_JOB_JSON_BYTES = 8 * 1024 * 1024  # serialized job entities, about 2 KB each
# the version a request started at
_VERSION: web.RequestKey[int | None] = web.RequestKey("data_version")


def data_version(request: web.Request) -> int | None:
    """The database's version as this request began (read once, at its first use)."""
    try:
        return request[_VERSION]
    except KeyError:
        version = request[_VERSION] = request.app[DB].data_version()
        return version


class VersionedCache(Generic[K, V]):
    """Values of one database version, at most ``max_weight`` of them by ``weigh``, oldest dropped first."""

    def __init__(self, max_weight: int, weigh: Callable[[V], int] = lambda _value: 1):
        self.max_weight = max_weight
        self._weigh = weigh
        self._version: int | None = None
        self._entries: dict[K, tuple[V, datetime | None, int]] = {}
        self._weight = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _at(self, version: int) -> bool:
        """Whether the entries are of ``version``; an older one (a request that began before a commit
        another one has seen) neither reads nor writes them, a newer one drops them."""
        if version == self._version:
            return True
        if self._version is not None and version < self._version:
            return False
        self.clear()
        self._version = version
        return True

    def clear(self) -> None:
        self._entries.clear()
        self._weight = 0

    def get(self, key: K, version: int | None, now: datetime | None = None) -> V | None:
        if version is None or not self._at(version):
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, until, _weight = entry
        if until is not None and (now is None or now >= until):
            return None
        return value

    def put(self, key: K, version: int | None, value: V, until: datetime | None = None) -> None:
        """Keep ``value`` for ``version`` (and, with ``until``, only while the clock is before it)."""
        if version is None or not self._at(version):
            return
        weight = self._weigh(value)
        if weight > self.max_weight:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._weight -= old[2]
        while self._entries and self._weight + weight > self.max_weight:
            _key, (_value, _until, dropped) = next(iter(self._entries.items()))
            del self._entries[_key]
            self._weight -= dropped
        self._entries[key] = (value, until, weight)
        self._weight += weight


def setup(app: web.Application) -> None:
    """The app's caches, empty."""
    app[CREDENTIALS] = VersionedCache(MAX_CREDENTIALS)
    app[RECORDS] = VersionedCache(MAX_RECORDS)
    app[JOB_JSON] = VersionedCache(MAX_JOB_JSON_BYTES, lambda kept: kept.weight)


async def row_through(
    request: web.Request,
    cache: VersionedCache[Any, tuple[Mapping[str, Any] | None]],
    key: Hashable,
    read: Callable[[], Awaitable[Mapping[str, Any] | None]],
) -> Mapping[str, Any] | None:
    """The row ``read()`` finds (or None), kept in ``cache`` under ``key`` (a miss is kept too).
    A kept row is shared by the requests that find it, so it is handed out read-only."""
    version = data_version(request)
    kept = cache.get(key, version)
    if kept is not None:
        return kept[0]
    row = await read()
    found = None if row is None else MappingProxyType(dict(row))
    cache.put(key, version, (found,))
    return found
