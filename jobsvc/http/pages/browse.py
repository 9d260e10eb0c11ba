"""A job's artifacts on the pages: the archive's folders listed from its central directory, one file out
of it and the whole archive, with the API's access rules and answers.

The listing comes from :mod:`jobsvc.storage.zipindex` (the cached central directory; nothing is
unpacked). Entry names are the archive's, so hostile: they are escaped as text, and only names that a
browser would not rewrite get links (no empty, ``.`` or ``..`` segment, no leading ``/``, valid UTF-8);
the others are listed without one. A file is sent as the API sends it: an attachment, under a
sandboxing Content-Security-Policy, never rendered on this origin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

from jobsvc.http import zipstream
from jobsvc.http.handlers.artifacts import available, send_archive, send_entry
from jobsvc.http.handlers.base import repo
from jobsvc.http.keys import STORE
from jobsvc.http.pages import respond
from jobsvc.http.pages.respond import NotFound, page
from jobsvc.http.pages.views import job_of
from jobsvc.storage import zipindex
from jobsvc.storage.blobs import LocalBlob

log = logging.getLogger(__name__)

MAX_LISTED = 1000  # entries of one folder on a page


@dataclass
class Folder:
    exists: bool = False
    folders: list[tuple[str, str | None]] = field(default_factory=list)  # (name, quoted browse path)
    files: list[tuple[str, int, str | None]] = field(default_factory=list)  # (name, size, quoted raw path)
    more: int = 0  # entries past MAX_LISTED


def linkable(name: str) -> bool:
    """A name a link can carry unchanged: browsers resolve ``.``/``..`` segments and merge empty ones."""
    parts = name.removesuffix("/").split("/")
    return not any(part in ("", ".", "..") for part in parts)


def folder(entries: list[tuple[bytes, int]], prefix: str) -> Folder:
    """What the folder ``prefix`` ("" or "a/b/") holds: sub-folders (also those only implied by deeper
    names) and files, sorted by name."""
    found = Folder(exists=prefix == "")
    folders: set[tuple[str, str | None]] = set()
    files: list[tuple[str, int, str | None]] = []
    for raw, size in entries:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not name.startswith(prefix):
            continue
        found.exists = True
        rest = name[len(prefix) :]
        if not rest:
            continue
        head, slash, _ = rest.partition("/")
        if slash:
            below = prefix + head + "/"
            folders.add((head, quote(below) if linkable(below) else None))
        else:
            files.append((rest, size, quote(name) if linkable(name) else None))
    found.folders = sorted(folders)
    found.files = sorted(files)
    listed = len(found.folders) + len(found.files)
    if listed > MAX_LISTED:
        found.more = listed - MAX_LISTED
        found.folders = found.folders[:MAX_LISTED]
        found.files = found.files[: MAX_LISTED - len(found.folders)]
    return found


def crumbs(prefix: str) -> list[tuple[str, str]]:
    """(name, the folder's browse path) for each folder down to ``prefix``."""
    parts = prefix.removesuffix("/").split("/") if prefix else []
    return [(part, quote("/".join(parts[: i + 1]))) for i, part in enumerate(parts)]


@page
async def browse(request: web.Request) -> web.StreamResponse:
    """``/-/jobs/<id>/artifacts/browse[/path]``."""
    project, _access, job = await job_of(request)
    archive = await repo(request).archive(job["id"])
    if archive is None or not available(archive):
        raise NotFound()
    path = request.match_info.get("path", "")
    try:
        zipstream.validate_entry_path(path)
    except zipstream.InvalidEntryPath:
        raise NotFound() from None
    prefix = path.strip("/") + "/" if path.strip("/") else ""
    error = None
    try:
        blob = await request.app[STORE].download(archive["store_key"])
        if isinstance(blob, LocalBlob):
            entries = await zipindex.list_entries(blob.path)
        else:
            entries = await zipindex.list_entries_in(blob)
    except FileNotFoundError:
        log.error("job %s: artifact file %s is missing", job["id"], archive["store_key"])
        raise NotFound() from None
    except zipindex.ArchiveError as exc:
        log.warning("job %s: %s cannot be listed: %s", job["id"], archive["store_key"], exc)
        entries, error = [], "This archive cannot be browsed (not a zip archive, damaged, or too large)."
    listing = folder(entries, prefix)
    if not listing.exists and error is None:
        raise NotFound()
    context = {
        "project": project,
        "job": job,
        "archive": archive,
        "listing": listing,
        "prefix": prefix,
        "crumbs": crumbs(prefix),
        "parent": crumbs(prefix)[-2][1] + "/" if prefix.count("/") > 1 else "",
        "error": error,
    }
    return await respond.render(request, "browse.html", context)


@page
async def raw_file(request: web.Request) -> web.StreamResponse:
    """``/-/jobs/<id>/artifacts/raw/<path>``: one file out of the archive, as the API sends it."""
    _project, _access, job = await job_of(request)
    return await send_entry(request, job["id"], check_available=True)


@page
async def download(request: web.Request) -> web.StreamResponse:
    """``/-/jobs/<id>/artifacts/download``: the whole archive, as the API sends it."""
    _project, _access, job = await job_of(request)
    return await send_archive(request, job["id"])
