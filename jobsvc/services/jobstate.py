"""Job state changes that runners cause: authentication by job token, state updates, the log's end.

Every change runs in one unit of work with a guarded UPDATE and
then lets the pipeline catch up (``processing.after_job_change``).
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import TYPE_CHECKING

from jobsvc.domain import errors, statemachine, tokens
from jobsvc.domain.timefmt import now_iso
from jobsvc.services import processing
from jobsvc.storage.db import DatabaseFull
from jobsvc.storage.repo import Repository
from jobsvc.storage.rows import Row
from jobsvc.storage.unit import Unit

if TYPE_CHECKING:  # the log stores call back into this module
    from jobsvc.services.tracestore import TraceStore

log = logging.getLogger(__name__)

ALIVE_FOR_RUNNER = ("running", "canceling")
KNOWN_FAILURES = frozenset({
    "unknown_failure", "script_failure", "api_failure", "stuck_or_timeout_failure", "runner_system_failure",
    "missing_dependency_failure", "runner_unsupported", "stale_schedule", "job_execution_timeout",
    "archived_failure", "unmet_prerequisites", "scheduler_failure", "data_integrity_failure",
    "forward_deployment_failure", "user_blocked", "ci_quota_exceeded", "no_matching_runner",
    "trace_size_exceeded", "builds_disabled", "environment_creation_failure", "deployment_rejected",
    "failed_outdated_deployment_job", "protected_environment_failure", "secrets_provider_not_found",
    "ip_restriction_failure",
})  # fmt: skip


async def authenticate_job(repo: Repository, job_id: int | None, token: str | None) -> Row:
    """``authenticate_job!``: 403 for an unknown job (None: an id past 64 bits) or a wrong token, and for
    a job no longer running, with ``Job-Status`` so the runner learns that its job was canceled or has finished."""
    job = None
    if job_id is not None:
        job = await repo.jobs.for_runner(job_id)
    if job is None or not token or job["token_digest"] is None:
        raise errors.forbidden()
    if not hmac.compare_digest(job["token_digest"], tokens.digest(token)):
        raise errors.forbidden()
    check_alive(job)
    return job


def check_alive(job: Row) -> None:
    """The runner may still write for this job (its ``status`` and ``erased_at``): else GitLab's 403."""
    if job["erased_at"] is not None:
        raise errors.forbidden("Job has been erased!")
    if job["status"] not in ALIVE_FOR_RUNNER:
        raise errors.forbidden("Job is not running", headers={"Job-Status": job["status"]})


async def alive_status(repo: Repository, job_id: int) -> str:
    """Read the job again (after a wait, a lock or a body): its status, or the 403 of ``check_alive``."""
    job = await repo.jobs.status(job_id)
    if job is None:
        raise errors.forbidden()
    check_alive(job)
    return job["status"]


def _finishing_status(current: str, state: str) -> str | None:
    """succeed/drop from running; a canceling job ends canceled whatever the runner reports."""
    return statemachine.transition(current, "succeed" if state == "success" else "drop")


async def runner_update(repo: Repository, traces: TraceStore, job: Row, state: str, failure_reason: object) -> str:
    """Apply ``PUT /jobs/:id``; returns the job's status afterwards."""
    if state == "running":

        async def touch(unit: Unit) -> str:
            await unit.jobs.touch(job["id"], now_iso())
            row = await unit.jobs.status(job["id"])
            return row["status"] if row else job["status"]

        return await repo.write(touch)
    reason = str(failure_reason) if failure_reason in KNOWN_FAILURES else "unknown_failure"
    return await finish(repo, traces, job["id"], state, reason)


async def finish(repo: Repository, traces: TraceStore, job_id: int, state: str, failure_reason: str | None) -> str:
    async def work(unit: Unit) -> str:
        row = await unit.jobs.status(job_id)
        assert row is not None
        if row["status"] not in ALIVE_FOR_RUNNER:
            return row["status"]
        new = _finishing_status(row["status"], state)
        if new is None:
            return row["status"]
        reason = failure_reason if new == "failed" else None
        await unit.jobs.set_status(job_id, row["status"], new, now_iso(), {"failure_reason": reason})
        await processing.after_job_change(unit, job_id)
        return new

    status = await repo.write(work)
    try:
        await archive_trace(repo, traces, job_id)
    except DatabaseFull:  # the job has ended all the same; its log stays readable, just not listed
        log.warning("job %d: disk full, its log was not listed as the job.log artifact", job_id)
    return status


async def drop_for_trace_size(repo: Repository, traces: TraceStore, job_id: int) -> None:
    await finish(repo, traces, job_id, "failed", "trace_size_exceeded")


async def archive_trace(repo: Repository, traces: TraceStore, job_id: int) -> None:
    """List a finished job's log as its ``trace`` artifact (GitLab archives the live trace as job.log)."""
    await traces.archive(job_id)


async def running_job_by_token(repo: Repository, token: str | None) -> Row | None:
    if not token:
        return None
    job = await repo.jobs.by_token_digest(tokens.digest(token))
    return job if job is not None and job["status"] in ALIVE_FOR_RUNNER else None


def depends_on(requester: Row, target: Row) -> bool:
    """Its own job, or a job of an earlier stage of its pipeline (or one it ``needs``)."""
    if requester["id"] == target["id"]:
        return True
    if requester["pipeline_id"] != target["pipeline_id"]:
        return False
    if requester["needs"] is not None:
        return target["name"] in json.loads(requester["needs"])
    return target["stage_idx"] < requester["stage_idx"]
