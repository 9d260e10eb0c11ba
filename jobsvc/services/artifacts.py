"""Job artifacts: accepting a runner's upload, keeping, expiring and deleting them.

An upload becomes visible in one step: the file is streamed to ``tmp/``,
fsynced and moved into place under a content-addressed name, and only then
does one transaction insert the row that points at it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from datetime import timedelta

from jobsvc.db import Database, Tx
from jobsvc.store import Incoming, Store
from jobsvc.timefmt import format_utc, now_iso, utcnow

log = logging.getLogger(__name__)

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


async def accept_upload(db: Database, store: Store, upload: Upload, incoming: Incoming) -> bool:
    """Store an upload; True when it was new, False when the same file was already there (idempotent)."""
    existing = await db.fetchone(
        "SELECT sha256 FROM job_artifacts WHERE job_id = ? AND file_type = ?", (upload.job_id, upload.file_type)
    )
    if existing is not None:
        incoming.discard()
        if existing["sha256"] == incoming.sha256:
            return False
        raise UploadRejected("another artifact of the same type already exists")
    stored = await asyncio.to_thread(store.install, incoming, upload.job_id, upload.file_format)
    expire_at = format_utc(utcnow() + timedelta(seconds=upload.expire_in)) if upload.expire_in else None

    async def work(tx: Tx) -> bool:
        again = await tx.fetchone(
            "SELECT sha256 FROM job_artifacts WHERE job_id = ? AND file_type = ?", (upload.job_id, upload.file_type)
        )
        if again is not None:
            if again["sha256"] == stored.sha256:
                return False
            raise UploadRejected("another artifact of the same type already exists")
        await tx.execute(
            """INSERT INTO job_artifacts (job_id, project_id, file_type, file_format, filename, size, sha256,
                   store_key, expire_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (upload.job_id, upload.project_id, upload.file_type, upload.file_format, upload.filename, stored.size,
             stored.sha256, stored.key, expire_at, now_iso()),
        )  # fmt: skip
        if upload.file_type == "archive":
            await tx.execute("UPDATE jobs SET artifacts_expire_at = ? WHERE id = ?", (expire_at, upload.job_id))
        return True

    try:
        return await db.write(work)
    except UploadRejected:
        store.remove(stored.key)
        raise
    except BaseException:
        # the row did not commit: nothing points at the file, whose name is this upload's own hash
        if await db.fetchone("SELECT 1 FROM job_artifacts WHERE store_key = ?", (stored.key,)) is None:
            store.remove(stored.key)
        raise


async def archive_of(db: Database, job_id: int) -> sqlite3.Row | None:
    return await db.fetchone("SELECT * FROM job_artifacts WHERE job_id = ? AND file_type = 'archive'", (job_id,))
