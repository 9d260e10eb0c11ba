"""The base URL of this instance as clients see it."""

from __future__ import annotations

from aiohttp import web

from jobsvc.http.keys import CONFIG, EXTERNAL_URL


def base_url(request: web.Request) -> str:
    """The configured external URL (setting, then fixture), else the request's own scheme and host."""
    return request.app[CONFIG].external_url or request.app[EXTERNAL_URL] or f"{request.scheme}://{request.host}"
