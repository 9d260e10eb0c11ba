"""POST cancel, retry, erase and play: GitLab's checks in GitLab's order, then the service."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jobsvc.domain import errors, policy
from jobsvc.domain.policy import Access
from jobsvc.domain.timefmt import utcnow
from jobsvc.http import body, entities, params
from jobsvc.http.auth import Principal, require
from jobsvc.http.handlers.base import (
    base_url,
    find_project,
    job_of,
    json_response,
    protected_ref,
    repo,
)
from jobsvc.http.keys import REPO, STORE, TRACES
from jobsvc.services import actions
from jobsvc.storage.rows import Row


async def _present(request: web.Request, project_id: int, job_id: int, status: int) -> web.Response:
    row = await repo(request).job(project_id, job_id)
    assert row is not None
    return json_response(entities.job(row, base_url(request), utcnow()), status=status)


async def _refused(call) -> Any:
    try:
        return await call
    except actions.ActionRefused as exc:
        raise errors.ApiError(exc.status, {"message": exc.message}) from None


async def _job_to_update(request: web.Request, principal: Principal) -> tuple[Row, Access, Row]:
    """GitLab's order: the project (404), the role on it (403), the job (404), then its protected ref (403)."""
    project, access = await find_project(request, principal)
    if not access.at_least(policy.DEVELOPER):
        raise errors.forbidden()
    job = await job_of(request, project)
    if not policy.can_update_job(access, await protected_ref(request, project, job["p_ref"])):
        raise errors.forbidden()
    return project, access, job


async def cancel(request: web.Request) -> web.Response:
    principal = await require(request)
    values = params.load(params.CancelSchema, await body.params(request))
    project, access, job = await _job_to_update(request, principal)
    if values["force"] and not access.at_least(policy.MAINTAINER):
        raise errors.forbidden()
    await actions.cancel(request.app[REPO], job["id"], force=values["force"])
    return await _present(request, project["id"], job["id"], 201)


async def retry(request: web.Request) -> web.Response:
    principal = await require(request)
    project, _access, job = await _job_to_update(request, principal)
    new_id = await _refused(actions.retry(request.app[REPO], job["id"], principal.user_id))
    return await _present(request, project["id"], new_id, 201)


async def erase(request: web.Request) -> web.Response:
    principal = await require(request)
    project, access = await find_project(request, principal)
    job = await job_of(request, project)
    protected = await protected_ref(request, project, job["p_ref"])
    if not policy.can_erase_job(access, protected, own_job=job["user_id"] == principal.user_id):
        raise errors.forbidden()
    app = request.app
    await _refused(actions.erase(app[REPO], app[STORE], app[TRACES], job["id"], principal.user_id))
    return await _present(request, project["id"], job["id"], 201)


async def play(request: web.Request) -> web.Response:
    principal = await require(request)
    values = params.load(params.PlaySchema, await body.params(request))
    project, access = await find_project(request, principal)
    if not access.read_build():
        raise errors.forbidden()
    job = await job_of(request, project)
    if not policy.can_update_job(access, await protected_ref(request, project, job["p_ref"])):
        raise errors.forbidden()
    variables = [actions.Variable(v["key"], v["value"]) for v in values["job_variables_attributes"]]
    await _refused(actions.play(request.app[REPO], job["id"], principal.user_id, variables or None))
    return await _present(request, project["id"], job["id"], 200)
