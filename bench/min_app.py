#!/usr/bin/env python3
"""The minimal aiohttp app: what the same framework does on one core with no application work at all.

    python bench/min_app.py --page PAGE.json --dir DIR [--host 127.0.0.1] [--port 0]

Routes (no access log, no middleware):

* ``GET /page.json``: the bytes of PAGE.json, read once at start (bench/run gives it jobsvc's own
  20-job page, ~40 KB): the fixed-body ceiling of the job list.
* ``GET /tail/{name}``: a Range of at most 1 MiB of DIR/name answered with one ``os.pread`` on the
  event loop (open, fstat, pread, close: no thread hop); anything else goes to ``FileResponse``.
  The ceiling of a log tail in this framework while the file is in the page cache.
* ``GET /file/{name}``: ``web.FileResponse(DIR/name)``, aiohttp's own file sender (Range handled by
  aiohttp, sendfile for the body).

Prints ``min_app listening on http://HOST:PORT`` once it listens (``--port 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from aiohttp import web

TAIL_MAX = 1 << 20


def make_app(page: bytes, directory: Path) -> web.Application:
    async def fixed(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="application/json")

    def path_of(request: web.Request) -> Path:
        name = request.match_info["name"]
        if "/" in name or name.startswith("."):
            raise web.HTTPNotFound()
        return directory / name

    async def tail(request: web.Request) -> web.StreamResponse:
        path = path_of(request)
        wanted = request.http_range  # bytes=-N: slice(-N, None)
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            start, stop = wanted.start, wanted.stop
            if start is None and stop is None:
                return web.FileResponse(path)
            if start is not None and start < 0:
                start, stop = max(size + start, 0), size
            start = start or 0
            stop = size if stop is None else min(stop, size)
            if stop - start > TAIL_MAX:
                return web.FileResponse(path)
            body = os.pread(fd, stop - start, start)
        finally:
            os.close(fd)
        return web.Response(
            status=206,
            body=body,
            content_type="application/octet-stream",
            headers={"Content-Range": f"bytes {start}-{stop - 1}/{size}", "Accept-Ranges": "bytes"},
        )

    async def file(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path_of(request))

    app = web.Application()
    app.router.add_get("/page.json", fixed)
    app.router.add_get("/tail/{name}", tail)
    app.router.add_get("/file/{name}", file)
    return app


async def serve(args: argparse.Namespace) -> None:
    runner = web.AppRunner(make_app(args.page.read_bytes(), args.dir), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"min_app listening on http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--page", type=Path, required=True, help="the fixed JSON body of GET /page.json")
    parser.add_argument("--dir", type=Path, required=True, help="the files of /tail/{name} and /file/{name}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
