"""Keeping a pipeline what GitLab would show after any of its jobs changed.

``after_job_change`` runs inside the transaction that changed the job: it
lets jobsvc.statemachine decide which ``created`` jobs move on (pending,
manual, scheduled or skipped), applies that, and recomputes the pipeline's
status from its latest jobs with GitLab's composite rules.
"""

from __future__ import annotations

from jobsvc.db import Tx
from jobsvc.statuses import COMPLETED, composite
from jobsvc.timefmt import now_iso


async def after_job_change(tx: Tx, job_id: int) -> None:
    row = await tx.fetchone("SELECT pipeline_id FROM jobs WHERE id = ?", (job_id,))
    if row is not None:
        await process_pipeline(tx, row["pipeline_id"])


async def process_pipeline(tx: Tx, pipeline_id: int) -> str:
    jobs = await tx.fetchall(
        """SELECT id, status, allow_failure, started_at, finished_at FROM jobs
            WHERE pipeline_id = ? AND retried = 0""",
        (pipeline_id,),
    )
    status = composite((job["status"], bool(job["allow_failure"])) for job in jobs) or "skipped"
    now = now_iso()
    started = [job["started_at"] for job in jobs if job["started_at"]]
    finished = [job["finished_at"] for job in jobs if job["finished_at"]]
    await tx.execute(
        """UPDATE pipelines SET status = ?, updated_at = ?, started_at = COALESCE(started_at, ?),
               finished_at = ? WHERE id = ?""",
        (status, now, min(started) if started else None,
         max(finished) if finished and status in COMPLETED else None, pipeline_id),
    )  # fmt: skip
    return status
