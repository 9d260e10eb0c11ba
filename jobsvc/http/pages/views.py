"""The pages of projects, pipelines and jobs, at GitLab's web paths, under the API's access rules.

A project is found as ``find_project`` finds it (404 unless ``read_project``); its pipelines need
``read_pipeline``, a job and its log ``read_build`` (public projects with public pipelines: anyone),
a debug log a developer. Whatever the viewer may not see is the 404 page, as GitLab answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web
from markupsafe import Markup

from jobsvc.domain import numbers, policy
from jobsvc.domain.statuses import composite
from jobsvc.domain.timefmt import utcnow
from jobsvc.http import entities, ranges
from jobsvc.http.handlers.artifacts import debug_trace
from jobsvc.http.handlers.base import find_project_by_path, repo
from jobsvc.http.keys import TRACES
from jobsvc.http.pages import ansi, respond, session
from jobsvc.http.pages.respond import PER_PAGE, NotFound, page
from jobsvc.storage.blobs import Download, LocalBlob
from jobsvc.storage.rows import Row

LOG_LIMIT = 1024 * 1024  # the most of a log a page shows: its end


async def root(request: web.Request) -> web.StreamResponse:
    return respond.see_other("/explore/projects", 302)


async def project_of(request: web.Request) -> tuple[Row, policy.Access]:
    seen = await session.viewer(request)
    return await find_project_by_path(request, seen.principal, request.match_info["project"])


def id_of(request: web.Request, name: str) -> int:
    """A numeric route segment; anything else names nothing (404)."""
    try:
        value = numbers.parse_id(request.match_info[name])
    except numbers.NotAnInteger:
        raise NotFound() from None
    if value is None:
        raise NotFound()
    return value


async def job_of(request: web.Request) -> tuple[Row, policy.Access, Row]:
    """The project and the job of a job page, for a viewer who may read jobs (read_build)."""
    project, access = await project_of(request)
    if not access.read_build():
        raise NotFound()
    job = await repo(request).job(project["id"], id_of(request, "job_id"))
    if job is None:
        raise NotFound()
    return project, access, job


def stages(jobs: list[Row]) -> list[dict[str, Any]]:
    """A pipeline's latest jobs by stage, in stage order, each stage with GitLab's composite status."""
    groups: dict[str, list[Row]] = {}
    order: dict[str, tuple[int, int]] = {}
    for job in jobs:
        groups.setdefault(job["stage"], []).append(job)
        order[job["stage"]] = min(order.get(job["stage"], (job["stage_idx"], job["id"])), (job["stage_idx"], job["id"]))
    return [
        {
            "name": name,
            "status": composite((job["status"], bool(job["allow_failure"])) for job in groups[name]) or "created",
            "jobs": groups[name],
        }
        for name in sorted(groups, key=lambda stage: order[stage])
    ]


@page
async def projects(request: web.Request) -> web.StreamResponse:
    principal = (await session.viewer(request)).principal
    number = respond.page_number(request)
    found = await repo(request).visible_projects(
        user_id=principal.user_id if principal else None,
        admin=bool(principal and principal.admin),
        membership=False,
        visibility=None,
        search=None,
        order_by="path",
        sort="asc",
        limit=PER_PAGE,
        offset=(number - 1) * PER_PAGE,
    )
    has_next = (number - 1) * PER_PAGE + len(found.rows) < (found.total or 0)
    return await respond.render(
        request, "projects.html", {"projects": found.rows, "page": number, "has_next": has_next}
    )


@page
async def project(request: web.Request) -> web.StreamResponse:
    """``/<project path>``: the project's pipelines are what jobsvc has to show of it."""
    row, _access = await project_of(request)
    return respond.see_other(f"/{row['path_with_namespace']}/-/pipelines", 302)


@page
async def pipelines(request: web.Request) -> web.StreamResponse:
    row, access = await project_of(request)
    if not access.read_pipeline():
        raise NotFound()
    number = respond.page_number(request)
    found = await repo(request).project_pipelines(
        row["id"], {}, order_by="id", sort="desc", limit=PER_PAGE, offset=(number - 1) * PER_PAGE
    )
    jobs = await repo(request).latest_jobs([pipeline["id"] for pipeline in found.rows])
    now = utcnow()
    listed = [
        {
            "entity": entities.pipeline(pipeline, "", now),
            "stages": stages([job for job in jobs if job["pipeline_id"] == pipeline["id"]]),
        }
        for pipeline in found.rows
    ]
    has_next = (number - 1) * PER_PAGE + len(found.rows) < (found.total or 0)
    context = {"project": row, "pipelines": listed, "page": number, "has_next": has_next}
    return await respond.render(request, "pipelines.html", context)


@page
async def pipeline(request: web.Request) -> web.StreamResponse:
    row, access = await project_of(request)
    if not access.read_pipeline():
        raise NotFound()
    found = await repo(request).pipeline(row["id"], id_of(request, "pipeline_id"))
    if found is None:
        raise NotFound()
    context = {
        "project": row,
        "pipeline": entities.pipeline(found, "", utcnow()),
        "parent_id": found["parent_id"],
        "stages": stages(await repo(request).latest_jobs([found["id"]])),
    }
    return await respond.render(request, "pipeline.html", context)


@page
async def job(request: web.Request) -> web.StreamResponse:
    project, access, row = await job_of(request)
    entity = entities.job(row, "", utcnow())
    log_allowed = not debug_trace(row) or access.at_least(policy.DEVELOPER)
    live = row["status"] in respond.ACTIVE  # a log may still come or grow: the page tails it
    log: dict[str, Any] | None = None
    if log_allowed:
        tail = await read_log_tail(request, row["id"], LOG_LIMIT)
        data, start = tail or (b"", 0)
        rendered = ansi.render(data, complete=not live)
        log = {
            "exists": tail is not None,
            # escaped by the renderer, which emits only its own markup
            "html": Markup(rendered.html),
            "truncated": start > 0,
            "offset": start + rendered.consumed,
            "next_line": rendered.next_line,
            "sgr": rendered.sgr,
        }
    context = {
        "project": project,
        "job": entity,
        "allow_failure": bool(row["allow_failure"]),
        "log": log,
        "log_allowed": log_allowed,
        "live": live,
        "archive": entity.get("artifacts_file"),
    }
    return await respond.render(request, "job.html", context)


@page
async def raw_log(request: web.Request) -> web.StreamResponse:
    """``/-/jobs/<id>/raw``: the log as it is, with Range (what the job page's live tail polls)."""
    _project, access, row = await job_of(request)
    if debug_trace(row) and not access.at_least(policy.DEVELOPER):
        raise NotFound()
    headers = {
        "Content-Disposition": f'inline; filename="{row["id"]}.log"',
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "no-store",
        "Job-Status": row["status"],
    }
    with contextlib.suppress(FileNotFoundError):
        blob = await request.app[TRACES].download(row["id"])
        if blob is not None:
            return await ranges.send_blob(request, blob, content_type="text/plain; charset=utf-8", headers=headers)
    return web.Response(body=b"", content_type="text/plain", charset="utf-8", headers=headers)


async def read_log_tail(request: web.Request, job_id: int, limit: int) -> tuple[bytes, int] | None:
    """The last ``limit`` bytes of a job's log, from the start of a line, and where they start; None: no log."""
    try:
        blob = await request.app[TRACES].download(job_id)
        if blob is None:
            return None
        data, start = await _tail(blob, limit)
    except FileNotFoundError:
        return None
    if start > 0:  # the first line is cut: show from the next one
        cut = data.find(b"\n") + 1
        data, start = data[cut:], start + cut
    return data, start


async def _tail(blob: Download, limit: int) -> tuple[bytes, int]:
    if isinstance(blob, LocalBlob):
        return await asyncio.to_thread(_file_tail, blob, limit)
    start = max(0, blob.size - limit)
    pieces = blob.read_range(start, blob.size)
    async with contextlib.aclosing(pieces):
        return b"".join([piece async for piece in pieces]), start


def _file_tail(blob: LocalBlob, limit: int) -> tuple[bytes, int]:
    file, st = ranges.open_regular(blob.path)
    with file:
        start = max(0, st.st_size - limit)
        file.seek(start)
        return file.read(st.st_size - start), start
