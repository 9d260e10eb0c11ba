"""Artifacts and logs over the API: downloads (archive, one file, by ref), the log, keep and delete."""

from __future__ import annotations

import functools
import json
import logging

from aiohttp import hdrs, web

from jobsvc.domain import errors, policy
from jobsvc.domain.timefmt import format_utc, utcnow
from jobsvc.http import entities, ranges, zipstream
from jobsvc.http.auth import authenticate, require
from jobsvc.http.handlers.base import (
    base_url,
    find_project,
    job_of,
    json_response,
    protected_ref,
    repo,
)
from jobsvc.http.keys import REPO, STORE, TRACES
from jobsvc.services import artifacts
from jobsvc.storage import zipindex
from jobsvc.storage.blobs import LocalBlob
from jobsvc.storage.rows import Row

log = logging.getLogger(__name__)


async def keep(request: web.Request) -> web.Response:
    principal = await require(request)
    project, access = await find_project(request, principal)
    job = await job_of(request, project)
    if not policy.can_update_job(access, await protected_ref(request, project, job["p_ref"])):
        raise errors.forbidden()
    if not await artifacts.keep(request.app[REPO], job["id"]):
        raise errors.not_found()
    row = await repo(request).job(project["id"], job["id"])
    assert row is not None  # the job found above
    return json_response(entities.job(row, base_url(request), utcnow()))


async def delete_job_artifacts(request: web.Request) -> web.Response:
    principal = await require(request)
    project, access = await find_project(request, principal)
    if not policy.can_destroy_artifacts(access):
        raise errors.forbidden()
    job = await job_of(request, project)
    await artifacts.delete_job_artifacts(request.app[REPO], request.app[STORE], job["id"])
    return web.Response(status=204)


async def delete_project_artifacts(request: web.Request) -> web.Response:
    principal = await require(request)
    project, access = await find_project(request, principal)
    if not policy.can_destroy_artifacts(access):
        raise errors.forbidden()
    await artifacts.expire_project_artifacts(request.app[REPO], project["id"])
    return json_response({"message": "202 Accepted"}, status=202)


# --- downloads -------------------------------------------------------------------------------

ARCHIVE_HEADERS = {
    "Content-Transfer-Encoding": "binary",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


def readable(access: policy.Access) -> None:
    """read_build, then read_job_artifacts (jobsvc has no per-job artifact access levels: the same rule)."""
    if not access.read_build():
        raise errors.forbidden()


async def send_archive(request: web.Request, job_id: int, *, direct_download: bool = True) -> web.StreamResponse:
    """The archive of a job as GitLab sends it: octet-stream, binary, an attachment; Range-aware.

    A store that hands out presigned URLs (``presign=1``) answers a plain GET (no Range: If-Range stays ours to
    decide) with a redirect to one instead, where ``direct_download`` allows it, as ``present_carrierwave_file!``
    does for object storage with proxy_download off; the object must exist first (``file.exists?``)."""
    archive = await repo(request).archive(job_id)
    if archive is None:
        raise errors.not_found()
    disposition = zipstream.content_disposition(archive["filename"], rfc5987=True)
    store = request.app[STORE]
    try:
        blob = await store.download(archive["store_key"])
        if direct_download and request.method == hdrs.METH_GET and hdrs.RANGE not in request.headers:
            url = await store.redirect_url(
                archive["store_key"], content_type="application/octet-stream", content_disposition=disposition
            )
            if url is not None:
                return web.Response(status=302, headers={hdrs.LOCATION: url})
        headers = {**ARCHIVE_HEADERS, "Content-Disposition": disposition}
        return await ranges.send_blob(request, blob, content_type="application/octet-stream", headers=headers)
    except FileNotFoundError:
        log.error("job %s: artifact file %s is missing", job_id, archive["store_key"])
        raise errors.not_found() from None


async def download(request: web.Request) -> web.StreamResponse:
    """``GET /projects/:id/jobs/:job_id/artifacts``."""
    principal = await authenticate(request, job_token_allowed=True)
    project, access = await find_project(request, principal)
    readable(access)
    job = await job_of(request, project)
    return await send_archive(request, job["id"])


def _job_name(request: web.Request) -> str:
    name = request.query.get("job")
    if not name:
        raise errors.ParamError(["job is missing"])
    return name


async def _job_for_ref(request: web.Request) -> tuple:
    principal = await authenticate(request, job_token_allowed=True)
    name = _job_name(request)
    project, access = await find_project(request, principal)
    readable(access)
    job = await repo(request).latest_successful_job_for_ref(project["id"], request.match_info["ref_name"], name)
    if job is None:
        raise errors.record_not_found()
    return project, job


async def download_by_ref(request: web.Request) -> web.StreamResponse:
    """``GET /projects/:id/jobs/artifacts/:ref_name/download?job=NAME``."""
    _project, job = await _job_for_ref(request)
    return await send_archive(request, job["id"])


def available(archive: Row | None) -> bool:
    """An archive whose files may be read one by one: not expired, or kept by its pipeline (artifacts_locked)."""
    if archive is None:
        return False
    expired = archive["expire_at"] is not None and archive["expire_at"] <= format_utc(utcnow())
    return not expired or bool(archive["artifacts_locked"])


async def send_entry(request: web.Request, job_id: int, *, check_available: bool) -> web.StreamResponse:
    archive = await repo(request).archive(job_id)
    if archive is None or (check_available and not available(archive)):
        raise errors.not_found()
    try:
        name = zipstream.request_entry_path(request, "artifact_path")
    except zipstream.InvalidEntryPath:
        raise errors.bad_request() from None
    try:
        blob = await request.app[STORE].download(archive["store_key"])
        if isinstance(blob, LocalBlob):
            entry = await zipindex.find_entry(blob.path, name)
            if entry is not None:
                return await zipstream.stream_entry(request, blob.path, entry)
        else:
            entry = await zipindex.find_entry_in(blob, name)
            if entry is not None:
                return await zipstream.stream_remote_entry(request, blob, entry)
    except FileNotFoundError:
        log.error("job %s: artifact file %s is missing", job_id, archive["store_key"])
        raise errors.not_found() from None
    except zipindex.ArchiveError as exc:
        # Not a zip (runners may upload any file as the archive), corrupt, or over the limits. Workhorse
        # answers a 500 here; but the archive is a client's upload, and no input may make a 5xx: no entry
        # can be read out of it, so the answer is the one for a missing entry.
        log.warning("job %s: no entry can be served from %s: %s", job_id, archive["store_key"], exc)
    # Workhorse's answer for a missing entry: Go's http.NotFound, plain text
    return web.Response(status=404, text="404 page not found\n", content_type="text/plain", charset="utf-8")


async def file(request: web.Request) -> web.StreamResponse:
    """``GET /projects/:id/jobs/:job_id/artifacts/*artifact_path``: one file out of the archive."""
    principal = await authenticate(request, job_token_allowed=True)
    project, access = await find_project(request, principal)
    readable(access)
    job = await job_of(request, project)
    return await send_entry(request, job["id"], check_available=True)


async def raw_by_ref(request: web.Request) -> web.StreamResponse:
    """``GET /projects/:id/jobs/artifacts/:ref_name/raw/*artifact_path?job=NAME``."""
    _project, job = await _job_for_ref(request)
    return await send_entry(request, job["id"], check_available=False)


async def trace(request: web.Request) -> web.StreamResponse:
    """``GET /projects/:id/jobs/:job_id/trace``: GitLab's plain answer, and ranges for who asks for them."""
    principal = await require(request)
    project, access = await find_project(request, principal)
    readable(access)
    job = await job_of(request, project)
    if debug_trace(job) and not access.at_least(policy.DEVELOPER):
        raise errors.forbidden()
    headers = {"Content-Disposition": f'infile; filename="{job["id"]}.log"'}
    try:
        blob = await request.app[TRACES].download(job["id"])
        if blob is not None:
            return await ranges.send_blob(
                request, blob, content_type="text/plain", headers=headers, allow_ranges="Range" in request.headers
            )
    except FileNotFoundError:
        pass
    return web.Response(status=200, body=b"", content_type="text/plain", headers=headers)


def debug_trace(job) -> bool:
    """CI_DEBUG_TRACE / CI_DEBUG_SERVICES make the log readable by developers only (read_build_trace)."""
    return _debug_variables(job["variables"], job["job_variables"])


@functools.lru_cache(maxsize=1024)
def _debug_variables(pipeline_variables: str | None, job_variables: str | None) -> bool:
    """``debug_trace`` of the two stored JSON texts, remembered by them: a tail poller asks the same each time."""
    variables = {**json.loads(pipeline_variables or "{}"), **{v["key"]: v["value"] for v in json.loads(
        job_variables or "[]")}}  # fmt: skip
    return any(str(variables.get(name, "")).lower() == "true" for name in ("CI_DEBUG_TRACE", "CI_DEBUG_SERVICES"))
