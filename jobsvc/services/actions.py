"""The job actions of the API: cancel, retry, erase, play.

Each is one BEGIN IMMEDIATE transaction: read the job, decide with
jobsvc.domain.statemachine, apply a guarded UPDATE, let the pipeline catch up.
Concurrent callers queue on the write lock, so fifty retries of one failed
job make exactly one new job and the other forty-nine see ``retried``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from jobsvc.domain import statemachine
from jobsvc.domain.timefmt import now_iso
from jobsvc.services import artifacts, processing
from jobsvc.storage.db import Database, Tx
from jobsvc.storage.rows import Row
from jobsvc.storage.store import Store


class ActionRefused(Exception):
    """The job is not in a state for this action; ``status`` and ``message`` are GitLab's answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Variable:
    key: str
    value: str


async def _job(tx: Tx, job_id: int) -> Row:
    row = await tx.fetchone(
        """SELECT j.*, r.info AS runner_info FROM jobs j LEFT JOIN runners r ON r.id = j.runner_id
            WHERE j.id = ?""",
        (job_id,),
    )
    assert row is not None, "the handler found the job before"
    return row


def _graceful(job: Row) -> bool:
    """Runners that announce ``cancel_gracefully`` run after_script on cancel: their jobs go to canceling."""
    info = json.loads(job["runner_info"] or "{}")
    return bool((info.get("features") or {}).get("cancel_gracefully"))


async def cancel(db: Database, job_id: int, *, force: bool) -> None:
    async def work(tx: Tx) -> None:
        job = await _job(tx, job_id)
        new = statemachine.transition(job["status"], "cancel", graceful_cancel=_graceful(job), force=force)
        if new is None:
            return  # not cancelable: GitLab answers 201 with the job unchanged
        await _set_status(tx, job, new)
        await processing.after_job_change(tx, job_id)

    await db.write(work)


async def _set_status(tx: Tx, job: Row, new: str, **extra: object) -> None:
    now = now_iso()
    stamps = statemachine.timestamps_for(new)
    columns = {"status": new, "updated_at": now, **{name: now for name in stamps}, **extra}
    assignments = ", ".join(f'"{name}" = ?' for name in columns)
    await tx.execute(
        f"UPDATE jobs SET {assignments} WHERE id = ? AND status = ?",  # noqa: S608 - fixed column names
        (*columns.values(), job["id"], job["status"]),
    )


async def _clone(tx: Tx, job: Row, user_id: int, status: str) -> int:
    """Ci::RetryJobService: a new attempt in the same pipeline and stage, the old one marked retried."""
    changed = await tx.execute("UPDATE jobs SET retried = 1 WHERE id = ? AND retried = 0", (job["id"],))
    if not changed:
        raise ActionRefused(403, "403 Forbidden - Job is not retryable")
    now = now_iso()
    return await tx.insert(
        """INSERT INTO jobs (project_id, pipeline_id, name, stage, stage_idx, status, "when", allow_failure, user_id,
               before_script, script, after_script, variables, job_variables, tags, needs, artifacts_spec, timeout,
               created_at, updated_at, queued_at)
           SELECT project_id, pipeline_id, name, stage, stage_idx, ?, "when", allow_failure, ?, before_script, script,
               after_script, variables, job_variables, tags, needs, artifacts_spec, timeout, ?, ?, ?
             FROM jobs WHERE id = ?""",
        (status, user_id, now, now, None, job["id"]),
    )


async def _retry(tx: Tx, job: Row, user_id: int) -> int:
    """Ci::RetryJobService: the new attempt starts ``created`` and processing decides (a manual or delayed
    job is enqueued at once); the skipped jobs after it go back to ``created`` too."""
    new_id = await _clone(tx, job, user_id, "created")
    await processing.reset_skipped_after(tx, new_id)
    await processing.after_job_change(tx, new_id, enqueue_immediately=job["when"] in statemachine.ACTIONABLE_WHEN)
    return new_id


async def retry(db: Database, job_id: int, user_id: int) -> int:
    """Retry a finished job; returns the new job's id."""

    async def work(tx: Tx) -> int:
        job = await _job(tx, job_id)
        if not statemachine.retryable(job["status"], bool(job["retried"])):
            raise ActionRefused(403, "403 Forbidden - Job is not retryable")
        return await _retry(tx, job, user_id)

    return await db.write(work)


async def play(db: Database, job_id: int, user_id: int, variables: list[Variable] | None) -> None:
    """Enqueue a manual or scheduled job as the player; a finished manual job is retried instead."""

    async def work(tx: Tx) -> None:
        job = await _job(tx, job_id)
        verdict = statemachine.playable(job["status"], job["when"], bool(job["retried"]))
        if verdict is None:
            raise ActionRefused(400, "400 Bad request - Unplayable Job")
        stored = json.dumps([{"key": v.key, "value": v.value} for v in variables]) if variables else None
        if verdict == "retry":
            new_id = await _retry(tx, job, user_id)
            if stored is not None:
                await tx.execute("UPDATE jobs SET job_variables = ? WHERE id = ?", (stored, new_id))
            return
        extra: dict[str, object] = {"user_id": user_id}
        if stored is not None:
            extra["job_variables"] = stored
        await _set_status(tx, job, "pending", **extra)
        await processing.reset_skipped_after(tx, job_id)  # EnqueueJobService resets the skipped dependents
        await processing.after_job_change(tx, job_id)

    await db.write(work)


async def erase(db: Database, store: Store, job_id: int, user_id: int) -> None:
    """Ci::BuildEraseService: every artifact and the log go; erased_at and erased_by are set.

    On a full disk the files go first (``artifacts.write_freeing``), so an erase frees the space it can."""
    async with store.trace_lock(job_id):
        has_log = store.trace_path(job_id).exists()

        async def work(tx: Tx) -> list[str]:
            job = await _job(tx, job_id)
            count = await tx.fetchone("SELECT count(*) AS n FROM job_artifacts WHERE job_id = ?", (job_id,))
            if not statemachine.erasable(job["status"], bool(count and count["n"]) or has_log):
                raise ActionRefused(403, "403 Forbidden - Job is not erasable!")
            rows = await tx.fetchall("SELECT store_key FROM job_artifacts WHERE job_id = ?", (job_id,))
            await tx.execute("DELETE FROM job_artifacts WHERE job_id = ?", (job_id,))
            now = now_iso()
            await tx.execute(
                """UPDATE jobs SET erased_at = ?, erased_by = ?, artifacts_expire_at = NULL, updated_at = ?
                    WHERE id = ?""",
                (now, user_id, now, job_id),
            )
            return [row["store_key"] for row in rows]

        async def doomed() -> list[str]:
            rows = await db.fetchall("SELECT store_key FROM job_artifacts WHERE job_id = ?", (job_id,))
            return [row["store_key"] for row in rows] + [store.trace_key(job_id)]

        keys = await artifacts.write_freeing(db, store, work, doomed)
        for key in {*keys, store.trace_key(job_id)}:
            store.remove(key)
