"""The runner API (lib/api/ci/runner.rb): registration, job requests, state updates, the trace append."""

from __future__ import annotations

import re

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from jobsvc.domain import errors, numbers
from jobsvc.domain.durations import DurationError, parse_duration
from jobsvc.http import body
from jobsvc.http.auth import job_token_principal
from jobsvc.http.handlers.artifacts import send_archive
from jobsvc.http.handlers.base import find_project_by_id, int_param, json_response
from jobsvc.http.keys import CONFIG, METRICS, REPO, STORE, TRACES
from jobsvc.http.params import load
from jobsvc.http.runner_params import (
    RUNNER_STATES,
    DownloadArtifactsParams,
    JobTokenParams,
    RegisterRunnerParams,
    RequestJobParams,
    RunnerTokenParams,
    UpdateJobParams,
    UploadArtifactsParams,
)
from jobsvc.http.urls import base_url
from jobsvc.services import artifacts, jobstate, payload, runners
from jobsvc.storage.rows import Row
from jobsvc.storage.store import (  # a StoreFull is the error middleware's 507
    CHUNK,
    TooLarge,
)

# [0-9], not \d: "٥-9" is no range (Ruby's \d is ASCII too)
_CONTENT_RANGE = re.compile(r"\A[ \t]*([0-9]+)-([0-9]+)(?:/([0-9]+|\*))?[ \t]*\Z")


def _text(status: int, headers: dict[str, str] | None = None) -> web.Response:
    """Grape's bare ``status N`` answer: the number as the body."""
    return web.Response(text=str(status), status=status, content_type="application/json", headers=headers)


async def register(request: web.Request) -> web.Response:
    params = load(RegisterRunnerParams(), await body.params(request))
    token = params["token"]
    if not runners.registration_token_ok(token, request.app[CONFIG].registration_token):
        raise errors.forbidden()
    try:
        runner_id, runner_token = await runners.register(request.app[REPO], params)
    except runners.RegistrationError as exc:
        raise errors.ApiError(400, exc.body) from None
    return json_response({"id": runner_id, "token": runner_token, "token_expires_at": None}, status=201)


async def _authenticated_runner(request: web.Request, schema: type = RunnerTokenParams) -> tuple[Row, dict]:
    params = load(schema(), await body.params(request))
    runner = await runners.by_token(request.app[REPO], params["token"])
    if runner is None:
        raise errors.forbidden()
    return runner, params


async def verify(request: web.Request) -> web.Response:
    runner, params = await _authenticated_runner(request)
    return json_response({"id": runner["id"], "token": params["token"], "token_expires_at": None})


async def unregister(request: web.Request) -> web.Response:
    runner, _ = await _authenticated_runner(request)
    await runners.delete(request.app[REPO], runner["id"])
    return web.Response(status=204)


async def request_job(request: web.Request) -> web.Response:
    runner, params = await _authenticated_runner(request, RequestJobParams)
    repo = request.app[REPO]
    await runners.touch(repo, runner, params.get("info"))
    version = await runners.queue_version(repo)
    nothing = web.Response(status=204, headers={"X-GitLab-Last-Update": version})
    if runner["paused"] or params.get("last_update") == version:
        return nothing
    assignment = await runners.assign_job(repo, runner)
    if assignment is None:
        return web.Response(status=204, headers={"X-GitLab-Last-Update": await runners.queue_version(repo)})
    return json_response(await payload.build(repo, assignment.job_id, assignment.token, base_url(request)), status=201)


def _job_token(request: web.Request, params: dict) -> str | None:
    return request.headers.get("JOB-TOKEN") or params.get("token")


async def update_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    params = load(UpdateJobParams(), await body.params(request))
    repo = request.app[REPO]
    job = await jobstate.authenticate_job(repo, job_id, _job_token(request, params))
    state = params.get("state")
    if state not in RUNNER_STATES:
        raise errors.ParamError(["state does not have a valid value"] if state else ["state is missing"])
    status = await jobstate.runner_update(repo, request.app[TRACES], job, state, params.get("failure_reason"))
    return _text(200, {"Job-Status": status})


def _job_id(request: web.Request) -> int | None:
    """The route's ``:id`` (Grape calls it ``id`` here); None past 64 bits, which no job has: 403 below."""
    return int_param(request, "job_id", message_name="id")


_JOB_TOKEN_PARAMS = JobTokenParams()  # stateless: one for every append, not one built per request


async def patch_trace(request: web.Request) -> web.StreamResponse:
    job_id = _job_id(request)
    params = load(_JOB_TOKEN_PARAMS, body.query(request.url.query.items()))
    repo, config = request.app[REPO], request.app[CONFIG]
    job = await jobstate.authenticate_job(repo, job_id, _job_token(request, params))
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        raise errors.ApiError(415, {"message": "415 Unsupported Media Type"})
    header = request.headers.get("Content-Range")
    if header is None:
        raise errors.ApiError(400, {"error": "400 Missing header Content-Range"})
    match = _CONTENT_RANGE.match(header)
    if match is None:
        raise errors.bad_request("Invalid Content-Range")
    start = numbers.parse_int(match.group(1), clamp=True)  # past 64 bits: past the size limit too
    chunks = request.content.iter_chunked(CHUNK)
    limit = config.trace_size_limit * 1024 * 1024
    result = await request.app[TRACES].append(job["id"], start, chunks, request.content_length, limit)
    headers = {"Range": f"0-{result.size}", "Job-Status": result.status}
    if not result.accepted:
        return json_response({"error": "416 Range Not Satisfiable"}, status=416, headers=headers)
    headers["X-GitLab-Trace-Update-Interval"] = "60"
    request.app[METRICS].trace_appended(max(0, result.size - start))
    return web.Response(status=202, headers=headers)


MB = 1024 * 1024
MAX_FIELD = 64 * 1024


def _broken_multipart() -> errors.ApiError:
    """aiohttp's ValueError (or InvalidHeader) for a body with no boundary, cut off before its closing one
    or inside a part's headers: Workhorse's 400."""
    return errors.bad_request("invalid multipart body")


async def _parts(request: web.Request):
    try:
        async for part in await request.multipart():
            yield part
    except (ValueError, HttpProcessingError):
        raise _broken_multipart() from None


async def _chunks(part: BodyPartReader):
    try:
        while chunk := await part.read_chunk(256 * 1024):
            yield chunk
    except (ValueError, HttpProcessingError):
        raise _broken_multipart() from None


async def _field(part: BodyPartReader) -> str:
    data = bytearray()
    async for chunk in _chunks(part):
        data += chunk
        if len(data) > MAX_FIELD:
            raise errors.bad_request(f"{part.name} is too long")
    return data.decode("utf-8", "replace")


async def upload_artifacts(request: web.Request) -> web.Response:
    """``POST /jobs/:id/artifacts``: the multipart upload, streamed to disk and counted as it comes."""
    job_id = _job_id(request)
    repo, store, config = request.app[REPO], request.app[STORE], request.app[CONFIG]
    fields = body.query(request.url.query.items())  # the form's fields join these; all are checked in _upload
    token = request.headers.get("JOB-TOKEN") or load(JobTokenParams(), fields)["token"]
    job = await jobstate.authenticate_job(repo, job_id, token) if token else None
    limit = config.max_artifacts_size * MB
    if request.content_length is not None and request.content_length > limit + MB:
        raise _too_large()
    if request.content_type != "multipart/form-data":
        raise errors.ParamError(["file is missing"])
    incoming = None
    try:
        async for part in _parts(request):
            if not isinstance(part, BodyPartReader):
                raise errors.bad_request("nested multipart is not accepted")
            if part.name == "file":
                if incoming is not None:
                    raise errors.bad_request("only one file may be uploaded")
                if job is None:  # the token must come before the file: authenticate before reading it
                    job = await jobstate.authenticate_job(repo, job_id, fields.get("token"))
                filename = part.filename
                incoming = await store.receive(_chunks(part), limit, job_id=job["id"])
            elif part.name == "metadata":
                async for _ in _chunks(part):
                    pass
            elif part.name:
                fields[part.name] = await _field(part)
        if incoming is None:
            raise errors.ParamError(["file is missing"])
        if job is None:
            job = await jobstate.authenticate_job(repo, job_id, fields.get("token"))
        upload = _upload(job, fields, filename, config.default_artifacts_expire_in)
        await artifacts.accept_upload(repo, store, upload, incoming)
        request.app[METRICS].artifact_uploaded(incoming.size)
    except TooLarge:
        raise _too_large() from None
    except artifacts.UploadRejected as exc:
        raise errors.bad_request(str(exc)) from None
    finally:
        if incoming is not None:
            await store.discard(incoming)
    return _text(201)


def _too_large() -> errors.ApiError:
    return errors.ApiError(413, {"message": "file size has reached maximum size limit"})


def _upload(job, fields: dict, filename: str | None, default_expire_in: str) -> artifacts.Upload:
    fields = load(UploadArtifactsParams(), {k: v for k, v in fields.items() if v != ""})
    file_type, file_format = fields["artifact_type"], fields["artifact_format"]
    if artifacts.TYPE_AND_FORMAT[file_type] != file_format:
        raise errors.bad_request(f"{file_type} artifacts must be in {artifacts.TYPE_AND_FORMAT[file_type]} format")
    try:
        expire_in = parse_duration(str(fields.get("expire_in") or default_expire_in))
    except DurationError:
        raise errors.ParamError(["expire_in is invalid"]) from None
    name = _safe_filename(filename) or artifacts.DEFAULT_FILENAMES.get(file_type, f"{file_type}.{file_format}")
    return artifacts.Upload(job["id"], job["project_id"], file_type, file_format, name, expire_in)


def _safe_filename(name: str | None) -> str:
    """The presented filename: a base name, no control characters (it ends up in a header)."""
    if not name:
        return ""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable() and ch not in '"')[:255]


async def download_dependency(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:id/artifacts``: a running job fetches its own archive or one it depends on.

    Authorized like the public artifact routes (the requesting job's user must be able to read the
    project's jobs), plus the dependency rule; GitLab's codes: 401 for a token of no running job,
    403 for a job of another project or one this job does not depend on, 404 without an archive.
    """
    job_id = _job_id(request)
    params = load(DownloadArtifactsParams(), body.query(request.url.query.items()))
    token = _job_token(request, params)
    repo = request.app[REPO]
    requester = await jobstate.running_job_by_token(repo, token)
    if requester is None:
        raise errors.unauthorized()
    target = None
    if job_id is not None:
        target = await repo.jobs.dependency(job_id)
    if target is None or target["project_id"] != requester["project_id"]:
        raise errors.forbidden()
    if not jobstate.depends_on(requester, target):
        raise errors.forbidden()
    assert token is not None  # a running job was found by it
    principal = await job_token_principal(request, token)
    project, access = await find_project_by_id(request, principal, target["project_id"])
    if not access.read_build():
        raise errors.forbidden()
    return await send_archive(request, target["id"], direct_download=params["direct_download"])
