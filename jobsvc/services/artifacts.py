"""Job artifacts: accepting a runner's upload, keeping, expiring and deleting them.

An upload becomes visible in one step: the blob store stages it (the directory
store: streamed to ``tmp/`` and fsynced; S3: streamed into a multipart upload
of a key of its own) and installs it (moved into place under a content-addressed
name; S3: nothing to move), and only then does one transaction insert the row
that points at it. That transaction reads the job again: an upload whose body was
still arriving when the job finished, was canceled or erased is refused there
(GitLab's 403 for a job not running) and its blob removed, so nothing can be
added to a job that has ended; so is a blob whose row did not commit.

Orphans (blobs no row points at: a crash between install and commit, or
between a delete's commit and the blob's removal) are removed on start and,
every ORPHAN_SWEEP_EVERY, by the sweeper, once older than the store's grace
period (an upload in flight elsewhere is never one of them); so are the
uploads a killed process left pending (S3's multipart uploads).

Deletes free space even on a full disk: when the transaction that drops the
rows cannot commit for want of room (``DatabaseFull``), the files go first
and the transaction is tried again (``write_freeing``). A crash between the
two leaves rows whose files are gone, which answer 404 and are logged on
start, which is what the delete asked for anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from jobsvc.domain.timefmt import format_utc, now_iso, utcnow
from jobsvc.services import jobstate
from jobsvc.services.leases import Lease
from jobsvc.storage.blobs import BlobInfo, BlobStore, Staged
from jobsvc.storage.db import DatabaseFull
from jobsvc.storage.queries.artifacts import ERASABLE, EXPIRED
from jobsvc.storage.repo import Repository
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
ORPHAN_SWEEP_EVERY = 3600.0  # seconds: listing every blob is too dear for each sweep round
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


async def accept_upload(repo: Repository, store: BlobStore, upload: Upload, incoming: Staged) -> bool:
    """Store an upload; True when it was new, False when the same file was already there (idempotent).

    GitLab's 403 when the job has ended since it was authenticated (checked again inside the INSERT's
    transaction, which is what makes it race-free)."""
    job = await repo.jobs.status(upload.job_id)
    assert job is not None, "the job was authenticated before"
    jobstate.check_alive(job)
    existing = await repo.artifacts.sha256(upload.job_id, upload.file_type)
    if existing is not None:
        await store.discard(incoming)
        if existing == incoming.sha256:
            return False
        raise UploadRejected("another artifact of the same type already exists")
    # before the file is in place: nothing that fails after it may leave the file without its row
    expire_at = format_utc(utcnow() + timedelta(seconds=upload.expire_in)) if upload.expire_in else None
    stored = await store.install(incoming, upload.job_id, upload.file_format)

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
        await store.remove(stored.key)
        raise
    except BaseException:
        # the row did not commit: nothing points at the file, whose name is this upload's own
        await remove_unless_known(repo, store, stored.key)
        raise


async def remove_unless_known(repo: Repository, store: BlobStore, key: str) -> None:
    """After a commit that failed (or may have): remove the blob, unless a row points at it after all."""
    if not await repo.artifacts.key_known(key):
        await store.remove(key)


async def keep(repo: Repository, job_id: int) -> bool:
    """Keep a job's artifacts forever; False when it has no unexpired archive (GitLab's ``artifacts?``)."""

    async def work(unit: Unit) -> bool:
        archive = await unit.artifacts.archive_expiry(job_id)
        if archive is None or (archive["expire_at"] is not None and archive["expire_at"] <= now_iso()):
            return False
        await unit.artifacts.keep(job_id)
        return True

    return await repo.write(work)


async def remove_files(store: BlobStore, keys: list[str]) -> None:
    """After the rows are gone: remove their files (a crash here leaves orphans, swept later)."""
    for key in keys:
        await store.remove(key)


async def write_freeing(
    repo: Repository, store: BlobStore, work: Callable[[Unit], Awaitable[T]], doomed: Callable[[], Awaitable[list[str]]]
) -> T:
    """Run a transaction that deletes artifact rows; on a disk too full for it, remove the files of the rows
    it would delete (``doomed``, read outside the transaction) first, and try once more."""
    try:
        return await repo.write(work)
    except DatabaseFull:
        keys = await doomed()
        log.warning("disk full: removing %d artifact files before their rows", len(keys))
        await remove_files(store, keys)
        return await repo.write(work)


async def delete_job_artifacts(repo: Repository, store: BlobStore, job_id: int) -> None:
    """Every artifact of a job but its log (GitLab's "erasable" artifacts)."""

    async def work(unit: Unit) -> list[str]:
        keys = await unit.artifacts.delete(ERASABLE, (job_id,))
        await unit.jobs.set_artifacts_expire_at(job_id, None)
        return keys

    await remove_files(store, await write_freeing(repo, store, work, lambda: repo.artifacts.keys(ERASABLE, (job_id,))))


async def expire_project_artifacts(repo: Repository, project_id: int) -> int:
    """``DELETE /projects/:id/artifacts``: mark every artifact expired now, except those of locked pipelines
    and of the latest successful pipeline of each ref; the sweeper then removes them."""

    async def work(unit: Unit) -> int:
        return await unit.artifacts.expire_project(project_id, now_iso())

    return await repo.write(work)


async def sweep(repo: Repository, store: BlobStore, batch: int = 500) -> int:
    """Remove expired artifacts whose pipeline is not locked; returns how many went."""
    params = (now_iso(), batch)

    async def work(unit: Unit) -> list[str]:
        return await unit.artifacts.delete(EXPIRED, params)

    keys = await write_freeing(repo, store, work, lambda: repo.artifacts.keys(EXPIRED, params))
    await remove_files(store, keys)
    if keys:
        log.info("swept %d expired artifacts", len(keys))
    return len(keys)


async def sweeper(
    repo: Repository, store: BlobStore, interval: float, lease: Lease, after: asyncio.Task[None] | None = None
) -> None:
    """The background task: every ``interval`` seconds, sweep until nothing is left; until cancelled.
    Every ORPHAN_SWEEP_EVERY, it also sweeps orphans and stale uploads. It starts once ``after`` (the
    start-up reconcile) is done, so the two never run at once.

    Only the process holding the lease sweeps (it lasts three intervals, and is renewed each round)."""
    if after is not None:
        await asyncio.wait([after])  # not ``await after``: cancelling the sweeper must not cancel it
    last_orphan_sweep = time.monotonic()
    while True:
        await asyncio.sleep(interval)
        try:
            while await lease.take() and await sweep(repo, store) > 0:
                pass
            if time.monotonic() - last_orphan_sweep >= ORPHAN_SWEEP_EVERY and await lease.take():
                last_orphan_sweep = time.monotonic()
                await sweep_orphans(repo, store, store.orphan_grace, lease=lease)
                await store.sweep_stale_uploads()
        except Exception:  # a failed round is logged and retried next time
            log.exception("artifact sweep failed")


ORPHAN_BATCH = 1000  # blobs of the store's listing compared with the rows at a time (an S3 listing's page)
_ARTIFACTS = "artifacts/"  # every listed key is under it, and sorts below _PAST_ARTIFACTS
_PAST_ARTIFACTS = "artifacts0"  # "0" follows "/"


@dataclass
class OrphanSweep:
    """What a sweep of the store's listing against the rows found (counts: it keeps no key)."""

    listed: int = 0
    removed: int = 0
    missing: int = 0
    finished: bool = True  # False when it stopped because another process holds the lease


async def sweep_orphans(
    repo: Repository,
    store: BlobStore,
    grace: timedelta,
    *,
    since: datetime | None = None,
    missing_before: str | None = None,
    lease: Lease | None = None,
    batch: int = ORPHAN_BATCH,
) -> OrphanSweep:
    """Remove the blobs no row points at that are older than ``grace`` (than ``since`` - ``grace``, when
    given: a blob written since then may have a row about to commit), and with ``missing_before`` (a
    timestamp) log the rows created before it whose blob is missing.

    A batch at a time, so that memory does not grow with the number of blobs: ``batch`` blobs of the
    store's listing (in key order), then the rows whose keys fall in the same key range, read after the
    listing: a row committed while it runs is read after its blob was listed, so that blob is never taken
    for an orphan. ``lease`` is renewed before each batch; when another process holds it, the sweep stops."""
    cutoff = (since or datetime.now(UTC)) - grace
    found = OrphanSweep()
    listing = store.list_artifacts()
    try:
        after, done = _ARTIFACTS, False
        while not done:
            pending: list[BlobInfo] = []
            done = True
            async for info in listing:
                if info.key <= (pending[-1].key if pending else after):
                    raise RuntimeError(f"the store's listing is not in key order at {info.key}")
                pending.append(info)
                if len(pending) >= batch:
                    done = False
                    break
            if lease is not None and not await lease.take():
                found.finished = False
                break
            upto = _PAST_ARTIFACTS if done else pending[-1].key
            await _compare(repo, store, pending, after, upto, cutoff, missing_before, batch, found)
            after = upto
    finally:
        if isinstance(listing, AsyncGenerator):
            await listing.aclose()
    return found


async def _compare(
    repo: Repository,
    store: BlobStore,
    listed: list[BlobInfo],
    after: str,
    upto: str,
    cutoff: datetime,
    missing_before: str | None,
    batch: int,
    found: OrphanSweep,
) -> None:
    """One batch: the listed blobs whose keys are in ``(after, upto]`` against the rows of that range."""
    modified = {info.key: info.modified for info in listed}
    known: set[str] = set()
    while True:  # the rows of the range, a page at a time (a range can hold many rows whose blob is missing)
        rows = await repo.artifacts.keys_between(after, upto, batch)
        for row in rows:
            key = row["store_key"]
            if key in modified:
                known.add(key)
            elif missing_before is not None and row["created_at"] < missing_before:
                found.missing += 1
                log.error("artifact file %s is missing; its downloads answer 404", key)
        if len(rows) < batch:
            break
        after = rows[-1]["store_key"]
    found.listed += len(listed)
    for info in listed:
        if info.key not in known and info.modified <= cutoff:
            log.warning("removing orphaned artifact file %s", info.key)
            await store.remove(info.key)
            found.removed += 1


async def reconcile(
    repo: Repository, store: BlobStore, lease: Lease | None = None, *, since: datetime | None = None
) -> None:
    """After start, in the background: blobs no row points at (a crash between install and commit) are
    removed, and uploads a killed process left pending; rows whose blob is missing are logged (their
    downloads answer 404). ``since``: when the process started (now by default); what was uploaded since is
    left alone, as the server is already answering."""
    since = since or datetime.now(UTC)
    began = time.monotonic()
    try:
        if lease is not None and not await lease.take():
            log.info("not reconciling artifacts: another process holds the sweeper lease")
            return
        await store.sweep_stale_uploads()
        found = await sweep_orphans(
            repo, store, store.orphan_grace_at_start, since=since, missing_before=format_utc(since), lease=lease
        )
    except Exception:
        log.exception("reconciling the artifacts with their files failed")
        return
    log.info(
        "reconciled %d artifact files with their rows in %.1f s: %d orphans removed, %d missing%s",
        found.listed, time.monotonic() - began, found.removed, found.missing,
        "" if found.finished else " (stopped: another process holds the sweeper lease)",
    )  # fmt: skip
