"""Keeping a pipeline what GitLab would show after any of its jobs changed.

Runs inside the transaction that changed the job: jobsvc.statemachine decides
which ``created`` jobs move on (pending, manual, scheduled or skipped), the
changes are written with guarded UPDATEs, and the pipeline's status is
recomputed from its latest jobs with GitLab's composite rules.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

from jobsvc import statemachine
from jobsvc.db import Tx
from jobsvc.statemachine import JobState
from jobsvc.statuses import COMPLETED
from jobsvc.timefmt import now_iso


def _state(row: sqlite3.Row) -> JobState:
    # jobsvc stores no needs as [], so ``needs: []`` (a DAG job that needs nothing) runs by stage
    needs = json.loads(row["needs"] or "[]")
    return JobState(
        id=row["id"], name=row["name"], stage_idx=row["stage_idx"], status=row["status"], when=row["when"],
        allow_failure=bool(row["allow_failure"]), retried=bool(row["retried"]), needs=tuple(needs) or None,
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
        assignments = ", ".join(f"{name} = ?" for name in columns)
        await tx.execute(
            f"UPDATE jobs SET {assignments} WHERE id = ? AND status = ?",  # noqa: S608 - fixed column names
            (*columns.values(), job_id, expected[job_id]),
        )


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
