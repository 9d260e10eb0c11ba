"""One place turns every failure into GitLab's bodies, and every response gets the security headers."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from jobsvc.domain import errors
from jobsvc.http.accesslog import redact
from jobsvc.http.handlers.base import json_response
from jobsvc.storage.db import DatabaseFull
from jobsvc.storage.store import StoreFull

log = logging.getLogger(__name__)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.ApiError as exc:
        return json_response(exc.body, exc.status, exc.headers)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        # GitLab's catch-all route answers every unknown path and method alike.
        error = errors.route_not_found()
        return json_response(error.body, error.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response({"message": f"{exc.status} {exc.reason}"}, exc.status)
    except (DatabaseFull, StoreFull):
        error = errors.insufficient_storage()
        return json_response(error.body, error.status)
    except Exception as failure:
        if isinstance(failure, ConnectionResetError) and request.transport is None:
            # The client went away, or was cut off for being too slow, in the middle of its request body.
            log.debug("client went away during %s %s", request.method, redact(request.raw_path))
            return web.Response(status=499)
        log.exception("unhandled error on %s %s", request.method, redact(request.raw_path))
        error = errors.internal_error()
        return json_response(error.body, error.status)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
