"""Job artifacts: accepting a runner's upload, keeping, expiring and deleting them.

An upload becomes visible in one step: the file is streamed to ``tmp/``,
fsynced and moved into place under a content-addressed name, and only then
does one transaction insert the row that points at it. That transaction reads
the job again: an upload whose body was still arriving when the job finished,
was canceled or erased is refused there (GitLab's 403 for a job not running)
and its file removed, so nothing can be added to a job that has ended.

Deletes free space even on a full disk: when the transaction that drops the
rows cannot commit for want of room (``DatabaseFull``), the files go first
and the transaction is tried again (``write_freeing``). A crash between the
two leaves rows whose files are gone, which answer 404 and are logged on
start, which is what the delete asked for anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from jobsvc.domain.timefmt import format_utc, now_iso, utcnow
from jobsvc.services import jobstate
from jobsvc.services.leases import Lease
from jobsvc.storage.db import DatabaseFull
from jobsvc.storage.queries.artifacts import ERASABLE, EXPIRED
from jobsvc.storage.repo import Repository
from jobsvc.storage.store import Incoming, Store
from jobsvc.storage.unit import Unit

log = logging.getLogger(__name__)

T = TypeVar("T")

# Ci::JobArtifact::TYPE_AND_FORMAT_PAIRS
TYPE_AND_FORMAT = {
    "archive": "zip", "metadata": "gzip", "trace": "raw", "junit": "gzip", "metrics_referee": "gzip",
    "network_referee": "gzip", "dotenv": "gzip", "cobertura": "gzip", "jacoco": "gzip", "cluster_applications": "gzip",
    "lsif": "zip", "cyclonedx": "gzip", "annotations": "gzip", "repository_xray": "gzip", "accessibility": "raw",
    "codequality": "raw", "sast": "raw", "secret_detection": "raw", "dependency_scanning": "raw",
    "container_scanning": "raw", "cluster_image_scanning": "raw", "dast": "raw", "license_scanning": "raw",
    "performance": "raw", "browser_performance": "raw", "load_performance": "raw", "terraform": "raw",
    "requirements": "raw", "requirements_v2": "raw", "coverage_fuzzing": "raw", "api_fuzzing": "raw",
    "metrics": "gzip", "sbom": "gzip",
}  # fmt: skip
FORMATS = ("raw", "zip", "gzip")
DEFAULT_FILENAMES = {"archive": "artifacts.zip", "metadata": "metadata.gz", "trace": "job.log"}


class UploadRejected(Exception):
    """An upload GitLab would refuse with 400; the message is GitLab's."""


@dataclass(frozen=True)
class Upload:
    job_id: int
    project_id: int
    file_type: str
    file_format: str
    filename: str
    expire_in: int | None  # seconds; None: never


async def accept_upload(repo: Repository, store: Store, upload: Upload, incoming: Incoming) -> bool:
    """Store an upload; True when it was new, False when the same file was already there (idempotent).

    GitLab's 403 when the job has ended since it was authenticated (checked again inside the INSERT's
    transaction, which is what makes it race-free)."""
    job = await repo.jobs.status(upload.job_id)
    assert job is not None, "the job was authenticated before"
    jobstate.check_alive(job)
    existing = await repo.artifacts.sha256(upload.job_id, upload.file_type)
    if existing is not None:
        incoming.discard()
        if existing == incoming.sha256:
            return False
        raise UploadRejected("another artifact of the same type already exists")
    # before the file is in place: nothing that fails after it may leave the file without its row
    expire_at = format_utc(utcnow() + timedelta(seconds=upload.expire_in)) if upload.expire_in else None
    stored = await asyncio.to_thread(store.install, incoming, upload.job_id, upload.file_format)

    async def work(unit: Unit) -> bool:
        job = await unit.jobs.status(upload.job_id)
        assert job is not None, "the job was authenticated before"
        jobstate.check_alive(job)  # the job may have ended while the body was arriving
        again = await unit.artifacts.sha256(upload.job_id, upload.file_type)
        if again is not None:
            if again == stored.sha256:
                return False
            raise UploadRejected("another artifact of the same type already exists")
        await unit.artifacts.add(
            (upload.job_id, upload.project_id, upload.file_type, upload.file_format, upload.filename, stored.size,
             stored.sha256, stored.key, expire_at, now_iso()),
        )  # fmt: skip
        if upload.file_type == "archive":
            await unit.jobs.set_artifacts_expire_at(upload.job_id, expire_at)
        return True

    try:
        return await repo.write(work)
    except UploadRejected:
        store.remove(stored.key)
        raise
    except BaseException:
        # the row did not commit: nothing points at the file, whose name is this upload's own hash
        if not await repo.artifacts.key_known(stored.key):
            store.remove(stored.key)
        raise


async def keep(repo: Repository, job_id: int) -> bool:
    """Keep a job's artifacts forever; False when it has no unexpired archive (GitLab's ``artifacts?``)."""

    async def work(unit: Unit) -> bool:
        archive = await unit.artifacts.archive_expiry(job_id)
        if archive is None or (archive["expire_at"] is not None and archive["expire_at"] <= now_iso()):
            return False
        await unit.artifacts.keep(job_id)
        return True

    return await repo.write(work)


def remove_files(store: Store, keys: list[str]) -> None:
    """After the rows are gone: remove their files (a crash here leaves orphans, cleaned on start)."""
    for key in keys:
        store.remove(key)


async def write_freeing(
    repo: Repository, store: Store, work: Callable[[Unit], Awaitable[T]], doomed: Callable[[], Awaitable[list[str]]]
) -> T:
    """Run a transaction that deletes artifact rows; on a disk too full for it, remove the files of the rows
    it would delete (``doomed``, read outside the transaction) first, and try once more."""
    try:
        return await repo.write(work)
    except DatabaseFull:
        keys = await doomed()
        log.warning("disk full: removing %d artifact files before their rows", len(keys))
        remove_files(store, keys)
        return await repo.write(work)


async def delete_job_artifacts(repo: Repository, store: Store, job_id: int) -> None:
    """Every artifact of a job but its log (GitLab's "erasable" artifacts)."""

    async def work(unit: Unit) -> list[str]:
        keys = await unit.artifacts.delete(ERASABLE, (job_id,))
        await unit.jobs.set_artifacts_expire_at(job_id, None)
        return keys

    remove_files(store, await write_freeing(repo, store, work, lambda: repo.artifacts.keys(ERASABLE, (job_id,))))


async def expire_project_artifacts(repo: Repository, project_id: int) -> int:
    """``DELETE /projects/:id/artifacts``: mark every artifact expired now, except those of locked pipelines
    and of the latest successful pipeline of each ref; the sweeper then removes them."""

    async def work(unit: Unit) -> int:
        return await unit.artifacts.expire_project(project_id, now_iso())

    return await repo.write(work)


async def sweep(repo: Repository, store: Store, batch: int = 500) -> int:
    """Remove expired artifacts whose pipeline is not locked; returns how many went."""
    params = (now_iso(), batch)

    async def work(unit: Unit) -> list[str]:
        return await unit.artifacts.delete(EXPIRED, params)

    keys = await write_freeing(repo, store, work, lambda: repo.artifacts.keys(EXPIRED, params))
    remove_files(store, keys)
    if keys:
        log.info("swept %d expired artifacts", len(keys))
    return len(keys)


async def sweeper(repo: Repository, store: Store, interval: float, lease: Lease) -> None:
    """The background task: every ``interval`` seconds, sweep until nothing is left; until cancelled.

    Only the process holding the lease sweeps (it lasts three intervals, and is renewed each round)."""
    while True:
        await asyncio.sleep(interval)
        try:
            while await lease.take() and await sweep(repo, store) > 0:
                pass
        except Exception:  # a failed round is logged and retried next time
            log.exception("artifact sweep failed")


async def reconcile(repo: Repository, store: Store) -> None:
    """On start: files no row points at (a crash between rename and commit) are removed; rows whose file
    is missing are logged (their downloads answer 404)."""
    known = await repo.artifacts.all_keys()
    for path in store.list_artifact_files():
        key = path.relative_to(store.root).as_posix()
        if key not in known:
            log.warning("removing orphaned artifact file %s", key)
            path.unlink(missing_ok=True)
    for key in sorted(known):
        if not key.startswith("traces/") and not store.path(key).exists():
            log.error("artifact file %s is missing; its downloads answer 404", key)
