"""GET endpoints of the Jobs API: project jobs, pipeline jobs, one job, the job of a job token."""

from __future__ import annotations

from aiohttp import web

from jobsvc.domain import errors
from jobsvc.domain.timefmt import utcnow
from jobsvc.http import entities, pagination, params
from jobsvc.http.auth import authenticate, require
from jobsvc.http.handlers import jobjson
from jobsvc.http.handlers.base import (
    base_url,
    find_pipeline,
    find_project,
    int_param,
    json_bytes,
    json_response,
    link_path,
    repo,
)
from jobsvc.http.keys import RATE_LIMITER


async def list_project_jobs(request: web.Request) -> web.Response:
    principal = await require(request, job_token_allowed=True)
    query = params.load(params.ProjectJobsSchema, params.query(request.url.query.items()))
    project, access = await find_project(request, principal)
    if not access.read_build():
        raise errors.forbidden()
    retry_after = await request.app[RATE_LIMITER].hit("jobs_index", principal.user_id)
    if retry_after is not None:
        raise errors.rate_limited(retry_after)

    page = pagination.page_of(query["page"], query["per_page"])
    base = base_url(request)
    raw_query = list(request.url.query.items())
    if query["pagination"] == "keyset":
        if query["order_by"] != "id" or query["sort"] != "desc":
            raise errors.ApiError(405, {"error": pagination.KEYSET_UNSUPPORTED_MESSAGE})
        after = None
        if query["cursor"] is not None:
            after = pagination.decode_cursor(query["cursor"])
            if after is None:
                raise errors.bad_request("Invalid cursor")
        result = await repo(request).project_jobs(
            project["id"], query["scope"], limit=page.per_page, after=after, ids_only=jobjson.caching(request)
        )
        next_after = result.rows[-1]["id"] if result.has_next and result.rows else None
        headers = pagination.keyset_headers(base, link_path(request), raw_query, page.per_page, next_after)
    else:
        if pagination.offset_limit_exceeded(query["page"], query["per_page"]):
            raise errors.ApiError(405, {"error": pagination.OFFSET_LIMIT_MESSAGE})
        result = await repo(request).project_jobs(
            project["id"], query["scope"], limit=page.per_page, offset=page.offset, ids_only=jobjson.caching(request)
        )
        headers = pagination.offset_headers(
            base,
            link_path(request),
            raw_query,
            page,
            has_next=result.has_next,
            out_of_range=not result.rows and page.page > 1,
            total=None,
        )
    return json_bytes(await jobjson.listed(request, result.rows), headers=headers)


async def list_pipeline_jobs(request: web.Request) -> web.Response:
    principal = await authenticate(request, job_token_allowed=True)
    data = params.query(request.url.query.items())
    data["pipeline_id"] = request.match_info["pipeline_id"]
    query = params.load(params.PipelineJobsSchema, data)
    project, access = await find_project(request, principal)
    if not access.read_pipeline():
        raise errors.forbidden()
    pipeline = await find_pipeline(request, project, query["pipeline_id"])

    page = pagination.page_of(query["page"], query["per_page"])
    result = await repo(request).pipeline_jobs(
        pipeline["id"],
        query["scope"],
        include_retried=query["include_retried"],
        limit=page.per_page,
        offset=page.offset,
        ids_only=jobjson.caching(request),
    )
    count = result.total or 0
    total = count if count <= pagination.MAX_COUNT else None
    headers = pagination.offset_headers(
        base_url(request),
        link_path(request),
        list(request.url.query.items()),
        page,
        has_next=result.has_next and page.per_page > 0,
        out_of_range=not result.rows and page.page > 1,
        total=total,
    )
    return json_bytes(await jobjson.listed(request, result.rows), headers=headers)


async def get_job(request: web.Request) -> web.Response:
    principal = await require(request)
    job_id = int_param(request, "job_id")
    project, access = await find_project(request, principal)
    if not access.read_build():
        raise errors.forbidden()
    if job_id is None:
        raise errors.record_not_found()
    data = jobjson.cached(request, project["id"], job_id)
    if data is None:
        row = await repo(request).job(project["id"], job_id)
        if row is None:
            raise errors.record_not_found()
        data = jobjson.one(request, row)
    return json_bytes(data)


async def get_current_job(request: web.Request) -> web.Response:
    """``GET /job``: the running job whose token authenticates the call."""
    principal = await require(request, job_token_allowed=True)
    if principal.job_id is None:
        raise errors.not_found("Job")
    row = await repo(request).job_by_id(principal.job_id)
    if row is None:
        raise errors.not_found("Job")
    return json_response(entities.job(row, base_url(request), utcnow()))
