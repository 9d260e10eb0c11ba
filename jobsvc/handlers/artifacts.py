"""Artifact endpoints: keep, delete, and (with ranges/zipentry) downloads."""

from __future__ import annotations

from aiohttp import web

from jobsvc import entities, errors, policy
from jobsvc.auth import require
from jobsvc.handlers.base import base_url, find_project, job_of, json_response, protected_ref, repo
from jobsvc.keys import DB, STORE
from jobsvc.services import artifacts
from jobsvc.timefmt import utcnow


async def keep(request: web.Request) -> web.Response:
    principal = await require(request)
    project, access = await find_project(request, principal)
    job = await job_of(request, project)
    if not policy.can_update_job(access, await protected_ref(request, project, job["p_ref"])):
        raise errors.forbidden()
    if not await artifacts.keep(request.app[DB], job["id"]):
        raise errors.not_found()
    row = await repo(request).job(project["id"], job["id"])
    return json_response(entities.job(row, base_url(request), utcnow()))


async def delete_job_artifacts(request: web.Request) -> web.Response:
    principal = await require(request)
    project, access = await find_project(request, principal)
    if not policy.can_destroy_artifacts(access):
        raise errors.forbidden()
    job = await job_of(request, project)
    await artifacts.delete_job_artifacts(request.app[DB], request.app[STORE], job["id"])
    return web.Response(status=204)


async def delete_project_artifacts(request: web.Request) -> web.Response:
    principal = await require(request)
    project, access = await find_project(request, principal)
    if not policy.can_destroy_artifacts(access):
        raise errors.forbidden()
    await artifacts.expire_project_artifacts(request.app[DB], project["id"])
    return json_response({"message": "202 Accepted"}, status=202)
