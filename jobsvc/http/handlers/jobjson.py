"""Job entities as the bytes a response carries, through the app's JOB_JSON cache (jobsvc.http.cache).

A job's entity is serialized once and kept, with the database version it was read at and the moment
the clock would change it (``entities.stable_until``). A job that waits or runs, whose durations grow
with the clock (``entities.counts_time``), is kept as the bytes around its two durations, which are
computed and serialized afresh for each answer. A list is the kept bytes of its jobs joined: byte for
byte what serializing the whole list at once gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import orjson
from aiohttp import web

from jobsvc.domain.timefmt import seconds_between, utcnow
from jobsvc.http import entities
from jobsvc.http.cache import data_version
from jobsvc.http.keys import JOB_JSON, REPO
from jobsvc.http.urls import base_url
from jobsvc.storage.rows import Row

# where the durations sit in a job entity serialized with both None; no string value can hold these
# bytes unescaped, and the job's own keys come before those of the objects it embeds
_DURATIONS = b'"duration":null,"queued_duration":null'
_QUEUED = b',"queued_duration":'


class Kept:
    """A job's serialized entity, or the bytes around its durations and the times they are counted from."""

    __slots__ = ("project_id", "head", "tail", "times")

    def __init__(self, project_id: int, head: bytes, tail: bytes = b"", times: tuple | None = None):
        self.project_id, self.head, self.tail, self.times = project_id, head, tail, times

    @property
    def weight(self) -> int:
        return len(self.head) + len(self.tail) + 200

    def render(self, now: datetime) -> bytes:
        if self.times is None:
            return self.head
        queued, started, finished = self.times
        duration, queued_duration = seconds_between(started, finished, now), seconds_between(queued, started, now)
        return b"".join((self.head, orjson.dumps(duration), _QUEUED, orjson.dumps(queued_duration), self.tail))


def caching(request: web.Request) -> bool:
    """Whether entities may come from the cache (the backend can tell when its data changed)."""
    return data_version(request) is not None


def _build(request: web.Request, present: entities.JobPresenter, row: Row) -> bytes:
    """The entity of ``row`` at ``present.now``, serialized; kept when the clock allows."""
    entity = present(row)
    data = orjson.dumps(entity)
    version = data_version(request)
    if version is None:
        return data
    until = entities.stable_until(row, present.now, present.now_text)
    if until is None:
        return data
    if entities.counts_time(row):
        head, marker, tail = orjson.dumps({**entity, "duration": None, "queued_duration": None}).partition(_DURATIONS)
        if not marker:
            return data
        times = (row["queued_at"], row["started_at"], row["finished_at"])
        kept = Kept(row["project_id"], head + b'"duration":', tail, times)
    else:
        kept = Kept(row["project_id"], data)
    request.app[JOB_JSON].put((present.base, row["id"]), version, kept, until)
    return data


def cached(request: web.Request, project_id: int, job_id: int) -> bytes | None:
    """A job's kept entity, if it is of this project and still true."""
    now = utcnow()
    kept = request.app[JOB_JSON].get((base_url(request), job_id), data_version(request), now)
    return kept.render(now) if kept is not None and kept.project_id == project_id else None


def one(request: web.Request, row: Row) -> bytes:
    """A job row's entity, serialized (and kept)."""
    return _build(request, entities.JobPresenter(base_url(request), utcnow()), row)


async def listed(request: web.Request, rows: Sequence[Row]) -> bytes:
    """A JSON array of the entities of a page's jobs, in order. ``rows`` hold all of a job's columns, or
    only its ``id`` (``ids_only`` reads): those come from the cache, or are read in one query."""
    base, now = base_url(request), utcnow()
    cache, version = request.app[JOB_JSON], data_version(request)
    parts: dict[int, bytes] = {}
    full: list[Row] = []
    missing: list[int] = []
    for row in rows:
        if "status" in row:
            full.append(row)
            continue
        kept = cache.get((base, row["id"]), version, now)
        if kept is not None:
            parts[row["id"]] = kept.render(now)
        else:
            missing.append(row["id"])
    if missing:
        full.extend(await request.app[REPO].jobs_by_ids(missing))
    if full:
        present = entities.JobPresenter(base, now)
        for row in full:
            parts[row["id"]] = _build(request, present, row)
    return b"[" + b",".join(parts[row["id"]] for row in rows if row["id"] in parts) + b"]"
