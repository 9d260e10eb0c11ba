"""Projects and pipelines: what clients read on their way to jobs."""

from __future__ import annotations

from aiohttp import web

from jobsvc.domain import errors, policy
from jobsvc.domain.timefmt import utcnow
from jobsvc.http import body, entities, pagination, params
from jobsvc.http.auth import authenticate, require
from jobsvc.http.handlers.base import (
    base_url,
    find_project,
    int_param,
    json_response,
    link_path,
    protected_ref,
    repo,
)
from jobsvc.services import pipelines


def _counted_headers(request: web.Request, page: pagination.PageRequest, rows: int, count: int) -> dict[str, str]:
    total = count if count <= pagination.MAX_COUNT else None
    has_next = page.offset + rows < count
    return pagination.offset_headers(
        base_url(request),
        link_path(request),
        list(request.url.query.items()),
        page,
        has_next=has_next,
        out_of_range=rows == 0 and page.page > 1,
        total=total,
    )


async def list_projects(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    query = params.load(params.ProjectsSchema, params.query(request.url.query.items()))
    page = pagination.page_of(query["page"], query["per_page"])
    found = await repo(request).visible_projects(
        user_id=principal.user_id if principal else None,
        admin=bool(principal and principal.admin),
        membership=query["membership"],
        visibility=query["visibility"],
        search=query["search"],
        order_by=query["order_by"],
        sort=query["sort"],
        limit=page.per_page,
        offset=page.offset,
    )
    base = base_url(request)
    body = [entities.project(row, base, row["access_level"], simple=query["simple"]) for row in found.rows]
    return json_response(body, headers=_counted_headers(request, page, len(found.rows), found.total or 0))


async def get_project(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    project, _access = await find_project(request, principal)
    return json_response(entities.project(project, base_url(request), project["access_level"]))


async def list_pipelines(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    query = params.load(params.PipelinesSchema, params.query(request.url.query.items()))
    project, access = await find_project(request, principal)
    if not access.read_pipeline():
        raise errors.forbidden()
    page = pagination.page_of(query["page"], query["per_page"])
    found = await repo(request).project_pipelines(
        project["id"], query, order_by=query["order_by"], sort=query["sort"], limit=page.per_page, offset=page.offset
    )
    base = base_url(request)
    body = [entities.pipeline_basic(row, base, prefix="") | {"name": None} for row in found.rows]
    return json_response(body, headers=_counted_headers(request, page, len(found.rows), found.total or 0))


async def get_pipeline(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    pipeline_id = int_param(request, "pipeline_id")
    project, access = await find_project(request, principal)
    if not access.read_pipeline():
        raise errors.forbidden()
    row = None if pipeline_id is None else await repo(request).pipeline(project["id"], pipeline_id)
    if row is None:
        raise errors.record_not_found()
    return json_response(entities.pipeline(row, base_url(request), utcnow()))


async def create_pipeline(request: web.Request) -> web.Response:
    """``POST /projects/:id/pipeline``: a pipeline from the project's stored ``.gitlab-ci.yml``."""
    principal = await require(request)
    values = params.load(params.CreatePipelineSchema, await body.params(request))
    project, access = await find_project(request, principal)
    if not policy.can_update_job(access, await protected_ref(request, project, values["ref"])):
        raise errors.forbidden()
    repository = repo(request)
    if not await pipelines.known_ref(repository, project, values["ref"]):
        raise errors.ApiError(400, {"message": {"base": ["Reference not found"]}})
    try:
        definition = pipelines.definition(project, values["ref"], values["variables"])
    except pipelines.PipelineRefused as exc:
        raise errors.ApiError(400, {"message": {"base": [str(exc)]}}) from None
    pipeline_id = await pipelines.create(repository, project, definition, principal.user_id)
    row = await repository.pipeline(project["id"], pipeline_id)
    assert row is not None  # created just now, in this project
    return json_response(entities.pipeline(row, base_url(request), utcnow()), status=201)
