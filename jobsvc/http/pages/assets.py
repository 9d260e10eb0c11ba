"""``/assets/<name>``: the pages' stylesheets and the job page's script, read from the package once.

From the package's resources rather than a directory on disk, so a zipped application serves them too;
a fixed set of names, so nothing else under the package can be asked for. ``ansi.css`` (the log's 256
colour classes) is generated from the renderer's palette.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from jobsvc.http.pages import ansi

_STATIC = resources.files("jobsvc.http.pages") / "static"
ASSETS: dict[str, tuple[bytes, str]] = {
    "pages.css": ((_STATIC / "pages.css").read_bytes(), "text/css"),
    "log.js": ((_STATIC / "log.js").read_bytes(), "text/javascript"),
    "ansi.css": (ansi.palette_css().encode(), "text/css"),
}


async def asset(request: web.Request) -> web.StreamResponse:
    found = ASSETS.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    body, kind = found
    return web.Response(body=body, content_type=kind, charset="utf-8", headers={"Cache-Control": "max-age=3600"})
