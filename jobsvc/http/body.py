"""Request bodies as Rack would see them: JSON or form-encoded, and empty bodies are fine.

Clients send POSTs with no body, with ``{}``, with ``Content-Type: application/json``
and ``Content-Length: 0`` (go-gitlab), or form-encoded (the Ruby gem, runners);
all of them mean "no parameters". Query parameters are merged in, as Grape does.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from jobsvc.domain import errors
from jobsvc.http.params import query

__all__ = ["params", "query", "read"]

MAX_BODY = 1024 * 1024


async def params(request: web.Request) -> dict[str, Any]:
    """Query and body parameters together (the body wins on a clash)."""
    values = query(request.url.query.items())
    if request.content_type == "multipart/form-data":
        return values
    raw = await read(request)
    if not raw.strip():
        return values
    if request.content_type == "application/json" or raw.lstrip()[:1] in (b"{", b"["):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise errors.bad_request("Invalid JSON body") from None
        if not isinstance(data, dict):
            raise errors.bad_request("The JSON body must be an object")
        values.update(data)
        return values
    if request.content_type in ("application/x-www-form-urlencoded", "", "application/octet-stream"):
        from urllib.parse import parse_qsl

        values.update(query(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)))
    return values


async def read(request: web.Request, limit: int = MAX_BODY) -> bytes:
    """The whole body, counted as it arrives: 413 past ``limit`` (client_max_size does not cover streams)."""
    if request.content_length is not None and request.content_length > limit:
        raise errors.ApiError(413, {"message": "413 Request Entity Too Large"})
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise errors.ApiError(413, {"message": "413 Request Entity Too Large"})
        chunks.append(chunk)
    return b"".join(chunks)
