"""Keeping a pipeline what GitLab would show after any of its jobs changed.

Runs inside the transaction that changed the job: jobsvc.domain.statemachine decides
which ``created`` jobs move on (pending, manual, scheduled or skipped), the
changes are written with guarded UPDATEs, and the pipeline's status is
recomputed from its latest jobs with GitLab's composite rules.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from datetime import timedelta

from jobsvc.domain import statemachine
from jobsvc.domain.durations import DurationError, parse_duration
from jobsvc.domain.statemachine import JobState
from jobsvc.domain.statuses import COMPLETED
from jobsvc.domain.timefmt import format_utc, now_iso, utcnow
from jobsvc.services.leases import Lease
from jobsvc.storage.repo import Repository
from jobsvc.storage.rows import Row
from jobsvc.storage.unit import Unit

log = logging.getLogger(__name__)


def _state(row: Row) -> JobState:
    needs = tuple(json.loads(row["needs"])) if row["needs"] is not None else None  # None: by stage
    return JobState(
        id=row["id"], name=row["name"], stage_idx=row["stage_idx"], status=row["status"], when=row["when"],
        allow_failure=bool(row["allow_failure"]), retried=bool(row["retried"]), needs=needs,
    )  # fmt: skip


async def _states(unit: Unit, pipeline_id: int) -> list[JobState]:
    return [_state(row) for row in await unit.jobs.states(pipeline_id)]


async def _apply(unit: Unit, changes: dict[int, str], expected: dict[int, str]) -> None:
    now = now_iso()
    for job_id, status in changes.items():
        extra = {"scheduled_at": await _scheduled_at(unit, job_id)} if status == "scheduled" else {}
        await unit.jobs.set_status(job_id, expected[job_id], status, now, extra)


async def _scheduled_at(unit: Unit, job_id: int) -> str:
    """A delayed job runs ``start_in`` after it is processed (GitLab's scheduled_at)."""
    try:
        seconds = parse_duration(await unit.jobs.start_in(job_id) or "0") or 0
    except DurationError:
        seconds = 0
    return format_utc(utcnow() + timedelta(seconds=seconds))


async def enqueue_due(unit: Unit) -> list[int]:
    """Scheduled jobs whose time has come go to pending (GitLab's RunScheduledBuildWorker)."""
    due = await unit.jobs.due(now_iso())
    await _apply(unit, {row["id"]: "pending" for row in due}, {row["id"]: "scheduled" for row in due})
    for pipeline_id in {row["pipeline_id"] for row in due}:
        await process_pipeline(unit, pipeline_id)
    return [row["id"] for row in due]


async def after_job_change(unit: Unit, job_id: int, *, enqueue_immediately: bool = False) -> None:
    """Process the job's pipeline; ``enqueue_immediately`` marks a retried manual job (RetryJobService)."""
    pipeline_id = await unit.jobs.pipeline_id(job_id)
    if pipeline_id is not None:
        await process_pipeline(unit, pipeline_id, enqueue_immediately={job_id} if enqueue_immediately else set())


async def process_pipeline(unit: Unit, pipeline_id: int, *, enqueue_immediately: set[int] | None = None) -> str:
    """Move what can move, then store the pipeline's status; returns it."""
    states = [
        replace(state, enqueue_immediately=True) if state.id in (enqueue_immediately or ()) else state
        for state in await _states(unit, pipeline_id)
    ]
    before = {state.id: state.status for state in states}
    changes = statemachine.process_pipeline(states)
    await _apply(unit, changes, before)
    after = [replace(state, status=changes.get(state.id, state.status)) for state in states]
    status = statemachine.pipeline_status(after, current=await unit.pipelines.status(pipeline_id) or "created")
    times = await unit.pipelines.job_times(pipeline_id)
    started, finished = (times["started"], times["finished"]) if times else (None, None)
    await unit.pipelines.set_status(pipeline_id, status, now_iso(), started, finished if status in COMPLETED else None)
    return status


async def reset_skipped_after(unit: Unit, job_id: int) -> None:
    """Ci::ResetSkippedJobsService: the skipped jobs after a retried or played job go back to created."""
    pipeline_id = await unit.jobs.pipeline_id(job_id)
    if pipeline_id is None:
        return
    states = await _states(unit, pipeline_id)
    job = next(state for state in states if state.id == job_id)
    changes = statemachine.reset_skipped_after(states, job)
    await _apply(unit, changes, {state.id: state.status for state in states})


async def scheduler(repo: Repository, lease: Lease, interval: float = 1.0) -> None:
    """The background task that enqueues delayed jobs when their time comes; until cancelled.

    A read each round; the lease (and the write) only when a job is due."""
    while True:
        await asyncio.sleep(interval)
        try:
            due = await repo.jobs.next_due()
            if due is not None and due <= now_iso() and await lease.take():
                await repo.write(enqueue_due)
        except Exception:  # logged, and tried again next time
            log.exception("enqueuing scheduled jobs failed")
