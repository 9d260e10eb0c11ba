"""The job actions of the API: cancel, retry, erase, play.

Each is one unit of work: read the job, decide with
jobsvc.domain.statemachine, apply a guarded UPDATE, let the pipeline catch up.
The backend serializes concurrent writers, so fifty retries of one failed
job make exactly one new job and the other forty-nine see ``retried``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from jobsvc.domain import statemachine
from jobsvc.domain.timefmt import now_iso
from jobsvc.services import artifacts, processing
from jobsvc.services.tracestore import TraceStore
from jobsvc.storage.blobs import BlobStore
from jobsvc.storage.queries.artifacts import OF_JOB
from jobsvc.storage.repo import Repository
from jobsvc.storage.rows import Row
from jobsvc.storage.unit import Unit


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


async def _job(unit: Unit, job_id: int) -> Row:
    row = await unit.jobs.for_action(job_id)
    assert row is not None, "the handler found the job before"
    return row


def _graceful(job: Row) -> bool:
    """Runners that announce ``cancel_gracefully`` run after_script on cancel: their jobs go to canceling."""
    info = json.loads(job["runner_info"] or "{}")
    return bool((info.get("features") or {}).get("cancel_gracefully"))


async def cancel(repo: Repository, job_id: int, *, force: bool) -> None:
    async def work(unit: Unit) -> None:
        job = await _job(unit, job_id)
        new = statemachine.transition(job["status"], "cancel", graceful_cancel=_graceful(job), force=force)
        if new is None:
            return  # not cancelable: GitLab answers 201 with the job unchanged
        await unit.jobs.set_status(job_id, job["status"], new, now_iso())
        await processing.after_job_change(unit, job_id)

    await repo.write(work)


async def _clone(unit: Unit, job: Row, user_id: int, status: str) -> int:
    """Ci::RetryJobService: a new attempt in the same pipeline and stage, the old one marked retried."""
    if not await unit.jobs.mark_retried(job["id"]):
        raise ActionRefused(403, "403 Forbidden - Job is not retryable")
    return await unit.jobs.clone(job["id"], status, user_id, now_iso())


async def _retry(unit: Unit, job: Row, user_id: int) -> int:
    """Ci::RetryJobService: the new attempt starts ``created`` and processing decides (a manual or delayed
    job is enqueued at once); the skipped jobs after it go back to ``created`` too."""
    new_id = await _clone(unit, job, user_id, "created")
    await processing.reset_skipped_after(unit, new_id)
    await processing.after_job_change(unit, new_id, enqueue_immediately=job["when"] in statemachine.ACTIONABLE_WHEN)
    return new_id


async def retry(repo: Repository, job_id: int, user_id: int) -> int:
    """Retry a finished job; returns the new job's id."""

    async def work(unit: Unit) -> int:
        job = await _job(unit, job_id)
        if not statemachine.retryable(job["status"], bool(job["retried"])):
            raise ActionRefused(403, "403 Forbidden - Job is not retryable")
        return await _retry(unit, job, user_id)

    return await repo.write(work)


async def play(repo: Repository, job_id: int, user_id: int, variables: list[Variable] | None) -> None:
    """Enqueue a manual or scheduled job as the player; a finished manual job is retried instead."""

    async def work(unit: Unit) -> None:
        job = await _job(unit, job_id)
        verdict = statemachine.playable(job["status"], job["when"], bool(job["retried"]))
        if verdict is None:
            raise ActionRefused(400, "400 Bad request - Unplayable Job")
        stored = json.dumps([{"key": v.key, "value": v.value} for v in variables]) if variables else None
        if verdict == "retry":
            new_id = await _retry(unit, job, user_id)
            if stored is not None:
                await unit.jobs.set_job_variables(new_id, stored)
            return
        extra: dict[str, object] = {"user_id": user_id}
        if stored is not None:
            extra["job_variables"] = stored
        await unit.jobs.set_status(job_id, job["status"], "pending", now_iso(), extra)
        await processing.reset_skipped_after(unit, job_id)  # EnqueueJobService resets the skipped dependents
        await processing.after_job_change(unit, job_id)

    await repo.write(work)


async def erase(repo: Repository, store: BlobStore, traces: TraceStore, job_id: int, user_id: int) -> None:
    """Ci::BuildEraseService: every artifact and the log go; erased_at and erased_by are set.

    On a full disk the files go first (``artifacts.write_freeing``), so an erase frees the space it can."""
    async with traces.lock(job_id):
        had_log = False  # a rerun after the files were freed first still knows there was a log

        async def work(unit: Unit) -> list[str]:
            nonlocal had_log
            job = await _job(unit, job_id)
            had_log = await traces.erase_live(unit, job_id) or had_log
            if not statemachine.erasable(job["status"], await unit.artifacts.count(job_id) > 0 or had_log):
                raise ActionRefused(403, "403 Forbidden - Job is not erasable!")
            keys = await unit.artifacts.delete(OF_JOB, (job_id,))
            await unit.jobs.mark_erased(job_id, user_id, now_iso())
            return keys

        async def doomed() -> list[str]:
            return await repo.artifacts.keys(OF_JOB, (job_id,)) + traces.live_keys(job_id)

        keys = await artifacts.write_freeing(repo, store, work, doomed)
        await artifacts.remove_files(store, sorted({*keys, *traces.live_keys(job_id)}))
