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
import sqlite3
from dataclasses import replace
from datetime import timedelta

from jobsvc.domain import statemachine
from jobsvc.domain.durations import DurationError, parse_duration
from jobsvc.domain.statemachine import JobState
from jobsvc.domain.statuses import COMPLETED
from jobsvc.domain.timefmt import format_utc, now_iso, utcnow
from jobsvc.storage.db import Database, Tx

log = logging.getLogger(__name__)


def _state(row: sqlite3.Row) -> JobState:
    needs = tuple(json.loads(row["needs"])) if row["needs"] is not None else None  # None: by stage
    return JobState(
        id=row["id"], name=row["name"], stage_idx=row["stage_idx"], status=row["status"], when=row["when"],
        allow_failure=bool(row["allow_failure"]), retried=bool(row["retried"]), needs=needs,
    )  # fmt: skip


async def _states(tx: Tx, pipeline_id: int) -> list[JobState]:
    rows = await tx.fetchall(
        """SELECT id, name, stage_idx, status, "when", allow_failure, retried, needs FROM jobs
            WHERE pipeline_id = ? ORDER BY id""",
        (pipeline_id,),
    )
    return [_state(row) for row in rows]


async def _apply(tx: Tx, changes: dict[int, str], expected: dict[int, str]) -> None:
    now = now_iso()
    for job_id, status in changes.items():
        stamps = statemachine.timestamps_for(status)
        columns = {"status": status, "updated_at": now, **{name: now for name in stamps}}
        if status == "scheduled":
            columns["scheduled_at"] = await _scheduled_at(tx, job_id)
        assignments = ", ".join(f"{name} = ?" for name in columns)
        await tx.execute(
            f"UPDATE jobs SET {assignments} WHERE id = ? AND status = ?",  # noqa: S608 - fixed column names
            (*columns.values(), job_id, expected[job_id]),
        )


async def _scheduled_at(tx: Tx, job_id: int) -> str:
    """A delayed job runs ``start_in`` after it is processed (GitLab's scheduled_at)."""
    row = await tx.fetchone("SELECT start_in FROM jobs WHERE id = ?", (job_id,))
    try:
        seconds = parse_duration(row["start_in"] or "0") or 0 if row else 0
    except DurationError:
        seconds = 0
    return format_utc(utcnow() + timedelta(seconds=seconds))


async def enqueue_due(tx: Tx) -> list[int]:
    """Scheduled jobs whose time has come go to pending (GitLab's RunScheduledBuildWorker)."""
    due = await tx.fetchall(
        "SELECT id, pipeline_id FROM jobs WHERE status = 'scheduled' AND scheduled_at <= ? ORDER BY id", (now_iso(),)
    )
    await _apply(tx, {row["id"]: "pending" for row in due}, {row["id"]: "scheduled" for row in due})
    for pipeline_id in {row["pipeline_id"] for row in due}:
        await process_pipeline(tx, pipeline_id)
    return [row["id"] for row in due]


async def after_job_change(tx: Tx, job_id: int, *, enqueue_immediately: bool = False) -> None:
    """Process the job's pipeline; ``enqueue_immediately`` marks a retried manual job (RetryJobService)."""
    row = await tx.fetchone("SELECT pipeline_id FROM jobs WHERE id = ?", (job_id,))
    if row is not None:
        await process_pipeline(tx, row["pipeline_id"], enqueue_immediately={job_id} if enqueue_immediately else set())


async def process_pipeline(tx: Tx, pipeline_id: int, *, enqueue_immediately: set[int] | None = None) -> str:
    """Move what can move, then store the pipeline's status; returns it."""
    states = [
        replace(state, enqueue_immediately=True) if state.id in (enqueue_immediately or ()) else state
        for state in await _states(tx, pipeline_id)
    ]
    before = {state.id: state.status for state in states}
    changes = statemachine.process_pipeline(states)
    await _apply(tx, changes, before)
    after = [replace(state, status=changes.get(state.id, state.status)) for state in states]
    current = await tx.fetchone("SELECT status FROM pipelines WHERE id = ?", (pipeline_id,))
    status = statemachine.pipeline_status(after, current=current["status"] if current else "created")
    times = await tx.fetchone(
        """SELECT min(started_at), max(finished_at) FROM jobs WHERE pipeline_id = ? AND retried = 0""", (pipeline_id,)
    )
    assert times is not None  # an aggregate always has its one row
    now = now_iso()
    await tx.execute(
        """UPDATE pipelines SET status = ?, updated_at = ?, started_at = COALESCE(started_at, ?), finished_at = ?
            WHERE id = ?""",
        (status, now, times[0], times[1] if status in COMPLETED else None, pipeline_id),
    )
    return status


async def reset_skipped_after(tx: Tx, job_id: int) -> None:
    """Ci::ResetSkippedJobsService: the skipped jobs after a retried or played job go back to created."""
    row = await tx.fetchone("SELECT pipeline_id FROM jobs WHERE id = ?", (job_id,))
    if row is None:
        return
    states = await _states(tx, row["pipeline_id"])
    job = next(state for state in states if state.id == job_id)
    changes = statemachine.reset_skipped_after(states, job)
    await _apply(tx, changes, {state.id: state.status for state in states})


async def scheduler(db: Database, interval: float = 1.0) -> None:
    """The background task that enqueues delayed jobs when their time comes; until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            row = await db.fetchone("SELECT min(scheduled_at) FROM jobs WHERE status = 'scheduled'")
            if row and row[0] is not None and row[0] <= now_iso():
                await db.write(enqueue_due)
        except Exception:  # logged, and tried again next time
            log.exception("enqueuing scheduled jobs failed")
