"""Job entities as the bytes a response carries, through the app's JOB_JSON cache (jobsvc.http.cache).

A job's entity is serialized once and kept, with the database version it was read at and the moment
the clock would change it (``entities.stable_until``); a job whose entity changes with the clock
(one that waits or runs) is built afresh each time. A list is the kept bytes of its jobs joined,
byte for byte what serializing the whole list at once gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import orjson
from aiohttp import web

from jobsvc.domain.timefmt import utcnow
from jobsvc.http import entities
from jobsvc.http.cache import data_version
from jobsvc.http.keys import JOB_JSON, REPO
from jobsvc.http.urls import base_url
from jobsvc.storage.rows import Row


def caching(request: web.Request) -> bool:
    """Whether entities may come from the cache (the backend can tell when its data changed)."""
    return data_version(request) is not None


def _keep(request: web.Request, base: str, now: datetime, row: Row, data: bytes) -> None:
    until = entities.stable_until(row, now)
    if until is not None:
        request.app[JOB_JSON].put((base, row["id"]), data_version(request), (row["project_id"], data), until)


def cached(request: web.Request, project_id: int, job_id: int) -> bytes | None:
    """A job's kept entity, if it is of this project and still true."""
    entry = request.app[JOB_JSON].get((base_url(request), job_id), data_version(request), utcnow())
    return entry[1] if entry is not None and entry[0] == project_id else None


def one(request: web.Request, row: Row) -> bytes:
    """A job row's entity, serialized (and kept)."""
    base, now = base_url(request), utcnow()
    data = orjson.dumps(entities.job(row, base, now))
    _keep(request, base, now, row, data)
    return data


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
        entry = cache.get((base, row["id"]), version, now)
        if entry is not None:
            parts[row["id"]] = entry[1]
        else:
            missing.append(row["id"])
    if missing:
        full.extend(await request.app[REPO].jobs_by_ids(missing))
    present = entities.JobPresenter(base, now)
    for row in full:
        data = parts[row["id"]] = orjson.dumps(present(row))
        _keep(request, base, now, row, data)
    return b"[" + b",".join(parts[row["id"]] for row in rows if row["id"] in parts) + b"]"
