"""A page as a response: the Jinja2 templates, the headers every page carries, the error pages.

Templates are autoescaped (aiohttp-jinja2 over a package loader, so they ship inside the wheel); the one
piece of ready markup a page holds is a log rendered by :mod:`jobsvc.http.pages.ansi`, which escapes it
itself. Every page is sent with a Content-Security-Policy that allows scripts, styles and images from
this origin only and nothing inline, and is never cached (it may show private data and holds a CSRF token).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from jobsvc.domain import errors
from jobsvc.domain.timefmt import parse
from jobsvc.http.entities import detailed_status
from jobsvc.http.pages import session

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
}
PER_PAGE = 20
# a job in one of these has a log still to come or growing (static/log.js has the same list)
ACTIVE = frozenset({"created", "waiting_for_resource", "preparing", "waiting_for_callback", "pending", "running",
                    "canceling", "scheduled"})  # fmt: skip

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class NotFound(Exception):
    """What this viewer may not see, or what does not exist: the 404 page (GitLab tells them apart to no one)."""


def setup(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("jobsvc.http.pages", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update({"when": when, "took": took})
    env.globals.update({"status_of": status_of})


def when(timestamp: str | None) -> str:
    """A stored timestamp as people read it: 2015-12-24 15:51 UTC."""
    if not timestamp:
        return ""
    return parse(timestamp).strftime("%Y-%m-%d %H:%M UTC")


def took(seconds: float | None) -> str:
    """A duration: 1h 2m 3s, 4m 5s, 6s."""
    if seconds is None:
        return ""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h"] if hours else []
    parts += [f"{minutes}m"] if hours or minutes else []
    return " ".join([*parts, f"{secs}s"])


def status_of(status: str, allow_failure: bool = False) -> dict[str, Any]:
    """How a status is shown: GitLab's label and icon group (a failure allowed to fail is a warning)."""
    shown = detailed_status(status, "")
    if allow_failure and status == "failed":
        return {"group": "warning", "label": "failed (allowed to fail)"}
    return {"group": shown["group"], "label": shown["label"]}


async def render(request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200) -> web.Response:
    """The page ``template`` for this request's viewer, with the page headers and the session's cookies."""
    viewer = await session.viewer(request)
    csrf = session.csrf_token(request)
    values = {"viewer": viewer, "csrf_token": csrf, "request_path": request.path_qs, **context}
    response = aiohttp_jinja2.render_template(template, request, values, status=status)
    response.headers.update(PAGE_HEADERS)
    session.keep_cookies(request, response, viewer, csrf)
    return response


def page(handler: Handler) -> Handler:
    """A page handler: what the viewer may not see is the 404 page; the API's errors become error pages."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except NotFound:
            return await not_found(request)
        except errors.ApiError as exc:
            if exc.status in (401, 403, 404):
                return await not_found(request)
            message = exc.body.get("message") or exc.body.get("error") or ""
            return await render(request, "error.html", {"status": exc.status, "message": str(message)},
                                status=exc.status)  # fmt: skip

    return wrapped


async def not_found(request: web.Request) -> web.Response:
    return await render(request, "error.html", {"status": 404, "message": "Page Not Found"}, status=404)


def see_other(location: str, status: int = 303) -> web.Response:
    """A redirect to a path on this server (303 after a form, 302 otherwise)."""
    return web.Response(status=status, headers={**PAGE_HEADERS, "Location": location})


def page_number(request: web.Request) -> int:
    """``?page=N`` (1 when missing or not a sane number)."""
    text = request.query.get("page", "1")
    return int(text) if text.isascii() and text.isdigit() and 0 < len(text) <= 6 and int(text) > 0 else 1
