"""Instance-level endpoints clients call before they get to jobs."""

from __future__ import annotations

from aiohttp import web

from jobsvc import GITLAB_VERSION, __version__
from jobsvc.domain import errors
from jobsvc.domain.timefmt import utcnow
from jobsvc.http import entities, openapi
from jobsvc.http.auth import require
from jobsvc.http.handlers.base import base_url, json_response


async def version(request: web.Request) -> web.Response:
    await require(request)
    return json_response(
        {
            "version": f"{GITLAB_VERSION}-jobsvc",
            "revision": f"jobsvc-{__version__}",
            "kas": {"enabled": False, "externalUrl": None, "externalK8sProxyUrl": None, "version": None},
            "enterprise": False,
        }
    )


async def current_user(request: web.Request) -> web.Response:
    principal = await require(request)
    if principal.job_id is not None:
        raise errors.unauthorized()
    return json_response(entities.current_user(principal.user, base_url(request), utcnow()))


async def api_root(request: web.Request) -> web.Response:
    """``GET /api/v4/``: GitLab has no resource here; its catch-all answers 404, and so do we."""
    raise errors.route_not_found()


async def openapi_document(request: web.Request) -> web.Response:
    """``GET /api/v4/openapi.json``: the OpenAPI 3.1 document of every endpoint (no credentials needed)."""
    return web.Response(body=openapi.document_bytes(), content_type="application/json")
