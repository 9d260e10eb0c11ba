"""Small helpers shared by the handlers: JSON responses, route parameters, project lookup."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

import orjson
from aiohttp import web

from jobsvc.domain import errors, numbers
from jobsvc.domain.policy import Access, is_protected
from jobsvc.http import pagination
from jobsvc.http.auth import Principal
from jobsvc.http.cache import row_through
from jobsvc.http.keys import RECORDS, REPO
from jobsvc.http.urls import base_url
from jobsvc.storage.repo import Repository
from jobsvc.storage.rows import Row

__all__ = [
    "base_url",
    "find_project",
    "find_project_by_id",
    "find_pipeline",
    "find_project_by_path",
    "int_param",
    "job_of",
    "json_bytes",
    "json_response",
    "link_path",
    "protected_ref",
    "repo",
]

JSON = "application/json"


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON, headers=headers)


def json_bytes(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A response of JSON already serialized."""
    return web.Response(body=body, status=status, content_type=JSON, headers=headers)


def link_path(request: web.Request) -> str:
    """The path for pagination links: the request's own, still percent-encoded as the client sent it."""
    return pagination.link_path(request.rel_url.raw_path)


def repo(request: web.Request) -> Repository:
    return request.app[REPO]


def int_param(request: web.Request, name: str, *, message_name: str | None = None) -> int | None:
    """A route segment that Grape declares as Integer: ``{"error": "job_id is invalid"}`` otherwise.

    None for an integer past 64 bits: an id no row can have, so that its lookup finds nothing.
    """
    try:
        return numbers.parse_id(request.match_info[name])
    except numbers.NotAnInteger:
        raise errors.ParamError([f"{message_name or name} is invalid"]) from None


async def find_project(request: web.Request, principal: Principal | None) -> tuple[Row, Access]:
    """``find_project!``: by numeric id or (case-insensitive) full path; 404 when not readable."""
    ident = request.match_info["id"]
    if numbers.is_integer(ident):
        project_id = numbers.parse_id(ident)  # past 64 bits: no project has that id
        row = None if project_id is None else await _project(request, principal, "id", project_id)
    elif "/" in ident:
        row = await _project(request, principal, "path", ident)
    else:
        row = None
    return _readable_project(row, principal)


async def find_project_by_id(request: web.Request, principal: Principal | None, project_id: int) -> tuple[Row, Access]:
    return _readable_project(await _project(request, principal, "id", project_id), principal)


async def find_project_by_path(request: web.Request, principal: Principal | None, path: str) -> tuple[Row, Access]:
    """A project by its full path (a page's URL), 404 when not readable, as ``find_project``."""
    return _readable_project(await _project(request, principal, "path", path), principal)


async def _project(request: web.Request, principal: Principal | None, by: str, ident: int | str) -> Row | None:
    """A project row with the caller's access level, through the RECORDS cache (jobsvc.http.cache)."""
    user_id = principal.user_id if principal else None
    repository = repo(request)

    def read() -> Awaitable[Row | None]:
        if isinstance(ident, int):
            return repository.project_by_id(ident, user_id)
        return repository.project_by_path(ident, user_id)

    return await row_through(request, request.app[RECORDS], ("project", by, ident, user_id), read)


async def find_pipeline(request: web.Request, project: Row, pipeline_id: int | None) -> Row:
    """A pipeline of the project (through the RECORDS cache), or GitLab's RecordNotFound 404."""
    row = None
    if pipeline_id is not None:  # None: past 64 bits, no such pipeline
        row = await row_through(
            request,
            request.app[RECORDS],
            ("pipeline", project["id"], pipeline_id),
            lambda: repo(request).pipeline(project["id"], pipeline_id),
        )
    if row is None:
        raise errors.record_not_found()
    return row


def _readable_project(row: Row | None, principal: Principal | None) -> tuple[Row, Access]:
    if row is None:
        raise errors.not_found("Project")
    # A job token reaches only its own job's project.
    if principal is not None and principal.job_project_id is not None and principal.job_project_id != row["id"]:
        raise errors.not_found("Project")
    access = Access(
        signed_in=principal is not None,
        admin=principal is not None and principal.admin,
        level=row["access_level"],
        visibility=row["visibility"],
        public_builds=bool(row["public_builds"]),
    )
    if not access.read_project():
        raise errors.not_found("Project")
    return row, access


async def job_of(request: web.Request, project: Row) -> Row:
    """The job named by the route in this project, or GitLab's RecordNotFound 404."""
    job_id = int_param(request, "job_id")
    row = None if job_id is None else await repo(request).job(project["id"], job_id)
    if row is None:
        raise errors.record_not_found()
    return row


async def protected_ref(request: web.Request, project: Row, ref: str) -> bool:
    return is_protected(ref, await repo(request).protected_branches(project["id"]))
