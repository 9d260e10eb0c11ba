"""The runner API (lib/api/ci/runner.rb): registration, job requests, state updates, the trace append."""

from __future__ import annotations

import re

from aiohttp import web

from jobsvc import body, errors
from jobsvc.handlers.base import json_response
from jobsvc.keys import CONFIG, DB, STORE
from jobsvc.services import jobstate, payload, runners
from jobsvc.store import StoreFull
from jobsvc.urls import base_url

_CONTENT_RANGE = re.compile(r"\A\s*(\d+)-(\d+)(?:/(\d+|\*))?\s*\Z")
MAX_PATCH = 64 * 1024 * 1024


def _text(status: int, headers: dict[str, str] | None = None) -> web.Response:
    """Grape's bare ``status N`` answer: the number as the body."""
    return web.Response(text=str(status), status=status, content_type="application/json", headers=headers)


async def _runner_from(params: dict) -> tuple:
    token = params.get("token")
    if not token:
        raise errors.ParamError(["token is missing"])
    return token


async def register(request: web.Request) -> web.Response:
    params = await body.params(request)
    token = await _runner_from(params)
    if not runners.registration_token_ok(str(token), request.app[CONFIG].registration_token):
        raise errors.forbidden()
    try:
        runner_id, runner_token = await runners.register(request.app[DB], params)
    except runners.RegistrationError as exc:
        raise errors.ApiError(400, exc.body) from None
    return json_response({"id": runner_id, "token": runner_token, "token_expires_at": None}, status=201)


async def _authenticated_runner(request: web.Request):
    params = await body.params(request)
    token = await _runner_from(params)
    runner = await runners.by_token(request.app[DB], str(token))
    if runner is None:
        raise errors.forbidden()
    return runner, params


async def verify(request: web.Request) -> web.Response:
    runner, params = await _authenticated_runner(request)
    return json_response({"id": runner["id"], "token": params["token"], "token_expires_at": None})


async def unregister(request: web.Request) -> web.Response:
    runner, _ = await _authenticated_runner(request)
    await runners.delete(request.app[DB], runner["id"])
    return web.Response(status=204)


async def request_job(request: web.Request) -> web.Response:
    runner, params = await _authenticated_runner(request)
    db = request.app[DB]
    await runners.touch(db, runner, params.get("info"))
    version = await runners.queue_version(db)
    nothing = web.Response(status=204, headers={"X-GitLab-Last-Update": version})
    if runner["paused"] or params.get("last_update") == version:
        return nothing
    assignment = await runners.assign_job(db, runner)
    if assignment is None:
        return web.Response(status=204, headers={"X-GitLab-Last-Update": await runners.queue_version(db)})
    return json_response(await payload.build(db, assignment.job_id, assignment.token, base_url(request)), status=201)


def _job_token(request: web.Request, params: dict) -> str | None:
    return request.headers.get("JOB-TOKEN") or params.get("token")


async def update_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    params = await body.params(request)
    db, store = request.app[DB], request.app[STORE]
    job = await jobstate.authenticate_job(db, job_id, _job_token(request, params))
    state = params.get("state")
    if state not in ("running", "success", "failed"):
        raise errors.ParamError(["state does not have a valid value"] if state else ["state is missing"])
    status = await jobstate.runner_update(db, store, job, state, params.get("failure_reason"))
    return _text(200, {"Job-Status": status})


def _job_id(request: web.Request) -> int:
    text = request.match_info["job_id"]
    if not text.isdigit():
        raise errors.ParamError(["id is invalid"])
    return int(text)


async def patch_trace(request: web.Request) -> web.StreamResponse:
    job_id = _job_id(request)
    params = body.query(request.url.query.items())
    db, store, config = request.app[DB], request.app[STORE], request.app[CONFIG]
    job = await jobstate.authenticate_job(db, job_id, _job_token(request, params))
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        raise errors.ApiError(415, {"message": "415 Unsupported Media Type"})
    header = request.headers.get("Content-Range")
    if header is None:
        raise errors.ApiError(400, {"error": "400 Missing header Content-Range"})
    match = _CONTENT_RANGE.match(header)
    if match is None:
        raise errors.bad_request("Invalid Content-Range")
    start = int(match.group(1))
    data = await _read_patch(request)
    if start + len(data) > config.trace_size_limit * 1024 * 1024:
        await jobstate.drop_for_trace_size(db, store, job["id"])
        raise errors.ApiError(403, {"error": "403 Forbidden"})
    try:
        result = await store.append_trace(job["id"], start, data)
    except StoreFull:
        raise errors.ApiError(507, {"message": "507 Insufficient Storage"}) from None
    headers = {"Range": f"0-{result.size}", "Job-Status": job["status"]}
    if not result.accepted:
        return json_response({"error": "416 Range Not Satisfiable"}, status=416, headers=headers)
    headers["X-GitLab-Trace-Update-Interval"] = "60"
    return web.Response(status=202, headers=headers)


async def _read_patch(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_PATCH:
        raise errors.ApiError(413, {"message": "413 Request Entity Too Large"})
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > MAX_PATCH:
            raise errors.ApiError(413, {"message": "413 Request Entity Too Large"})
        chunks.append(chunk)
    return b"".join(chunks)
