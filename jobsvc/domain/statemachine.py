"""GitLab's job state machine and pipeline processing, as plain data and pure functions.

The database layer reads a pipeline's jobs into ``JobState`` values, asks these
functions what GitLab would change, and writes the answer back inside the same
transaction. Nothing here touches a database, a clock or the network, so every
rule can be tested as a table and driven by a property-based test.

Sources, all in gitlabhq/gitlabhq:

- events and their accepted statuses: ``app/models/commit_status.rb`` (enqueue,
  run, skip, drop, success, cancel, process, force_cancel) and
  ``app/models/ci/build.rb`` (actionize, schedule, unschedule);
- timestamps: the ``before_transition`` hooks of ``commit_status.rb``;
- predicates: ``Ci::Build#cancelable?``, ``#playable?``, ``#erasable?`` and
  ``Ci::Processable#retryable?``;
- processing: ``Ci::PipelineProcessing::AtomicProcessingService`` with its
  ``StatusCollection``, ``Ci::ProcessBuildService`` and
  ``Gitlab::Ci::Status::Composite`` (its ``dag:`` flag);
- reset on retry and play: ``Ci::ResetSkippedJobsService``, called by
  ``Ci::RetryJobService`` and ``Ci::EnqueueJobService``.

jobsvc has no resource groups and no prerequisites (Kubernetes), so ``enqueue``
always goes straight to ``pending``, never through ``waiting_for_resource`` or
``preparing``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal

from jobsvc.domain.statuses import COMPLETED, IGNORED, composite

ACTIONABLE_WHEN = frozenset({"manual", "delayed"})  # Ci::Processable::ACTIONABLE_WHEN
RETRYABLE = frozenset({"success", "failed", "canceled", "canceling"})

# CommitStatus: the statuses ``success`` accepts; ``drop`` also takes the blocked ones.
_UNFINISHED = frozenset({"created", "waiting_for_resource", "preparing", "waiting_for_callback", "pending", "running"})
# HasStatus::CANCELABLE_STATUSES (alive + scheduled - canceling); the ``cancel`` event adds ``manual``.
_CANCELABLE = frozenset({*_UNFINISHED, "scheduled"})

# event -> ((accepted statuses, target), ...); the first row that accepts the status wins.
TRANSITIONS: Mapping[str, tuple[tuple[frozenset[str], str], ...]] = MappingProxyType({
    "enqueue": ((frozenset({"created", "skipped", "manual", "scheduled"}), "pending"),),
    "run": ((frozenset({"pending"}), "running"),),
    # A canceling job ends canceled whatever its runner reports: "runner returns success/failed".
    "succeed": ((frozenset({"canceling"}), "canceled"), (_UNFINISHED, "success")),
    "drop": ((frozenset({"canceling"}), "canceled"), (_UNFINISHED | {"manual", "scheduled"}, "failed")),
    "cancel": ((_CANCELABLE | {"manual"}, "canceled"),),
    "skip": ((frozenset({"created", "waiting_for_resource", "preparing", "pending"}), "skipped"),),
    "actionize": ((frozenset({"created"}), "manual"),),
    "schedule": ((frozenset({"created"}), "scheduled"),),
    "unschedule": ((frozenset({"scheduled"}), "manual"),),
    # What ResetSkippedJobsService uses to hand a job back to processing.
    "process": ((frozenset({"skipped", "manual"}), "created"),),
})  # fmt: skip
EVENTS = tuple(TRANSITIONS)

# Columns set to "now" when a job enters a status (commit_status.rb before_transition hooks).
# Entering ``scheduled`` also sets scheduled_at (now + start_in) and leaving it clears it;
# that needs start_in, so the caller does it.
TIMESTAMPS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "pending": ("queued_at",),
    "running": ("started_at",),
    "success": ("finished_at",),
    "failed": ("finished_at",),
    "canceled": ("finished_at",),
})  # fmt: skip

# when -> the preceding status that lets a job run (on_success, manual, delayed: see _valid_previous_statuses)
_RUNS_AFTER: Mapping[str, frozenset[str]] = MappingProxyType({
    "on_failure": frozenset({"failed"}),
    "always": frozenset({"success", "failed", "skipped"}),
})  # fmt: skip

# Ci::Pipeline's ``enqueue`` event: where a pipeline goes from these statuses when its jobs are pending.
_PIPELINE_ENQUEUE: Mapping[str, str] = MappingProxyType({
    **dict.fromkeys(("success", "failed", "canceling", "canceled", "running"), "running"),
    "waiting_for_callback": "waiting_for_callback",
})  # fmt: skip

Verdict = Literal["enqueue", "retry"]


@dataclass(frozen=True)
class JobState:
    """What processing needs to know of one job (one attempt).

    ``needs`` is None for a job scheduled by stages and a tuple of names for a job
    with ``needs:`` (GitLab's ``scheduling_type: dag``); ``needs: []`` is the
    empty tuple, a DAG job that needs nothing and starts at once.
    ``enqueue_immediately`` marks a retried manual or delayed job: GitLab enqueues
    it instead of making it wait for a second play.
    """

    id: int
    name: str
    stage_idx: int
    status: str
    when: str = "on_success"
    allow_failure: bool = False
    retried: bool = False
    needs: tuple[str, ...] | None = None
    enqueue_immediately: bool = False


def transition(status: str, event: str, *, graceful_cancel: bool = False, force: bool = False) -> str | None:
    """The status ``event`` moves a job in ``status`` to, or None when the event does not apply.

    ``graceful_cancel``: the runner runs after_script on cancel, so a running job
    goes to ``canceling`` (``Ci::Build#supports_canceling?``). ``force`` is
    ``force_cancel``: it ends a canceling job; on any other status it is a plain cancel.
    """
    if event not in TRANSITIONS:
        raise ValueError(f"unknown event: {event}")
    if event == "cancel":
        if status == "canceling":
            return "canceled" if force else None
        if status == "running" and graceful_cancel:
            return "canceling"
    return next((target for sources, target in TRANSITIONS[event] if status in sources), None)


def timestamps_for(status: str) -> tuple[str, ...]:
    """The timestamp columns to set to now when a job enters ``status``."""
    return TIMESTAMPS.get(status, ())


def cancelable(status: str) -> bool:
    """Whether the cancel endpoint changes the job: the statuses the ``cancel`` event accepts.

    ``Ci::Build#cancelable?`` is narrower (created or active, so not manual or
    scheduled); the event itself, which the endpoint fires, also takes those two.
    """
    return transition(status, "cancel") is not None


def retryable(status: str, retried: bool) -> bool:
    """``Ci::Processable#retryable?``: a finished (or canceling) latest attempt."""
    return status in RETRYABLE and not retried


def playable(status: str, when: str, retried: bool) -> Verdict | None:
    """``Ci::Build#playable?`` and what playing does: enqueue a manual or scheduled
    action in place, retry an action that already ran, None for anything else."""
    if when not in ACTIONABLE_WHEN:
        return None
    if status in ("manual", "scheduled"):
        return "enqueue"
    return "retry" if retryable(status, retried) else None


def erasable(status: str, has_artifacts_or_log: bool) -> bool:
    """``Ci::Build#erasable?``: complete, with something to erase."""
    return status in COMPLETED and has_artifacts_or_log


def latest(jobs: Iterable[JobState]) -> list[JobState]:
    """The latest attempts: GitLab's ``current_jobs``, what every status is computed from."""
    return [job for job in jobs if not job.retried]


def pipeline_status(jobs: Iterable[JobState], current: str = "created") -> str:
    """The pipeline's status once its jobs changed: the composite of its latest attempts,
    applied as ``Ci::Pipeline#set_status`` applies it to the ``current`` status.

    Two rules of the pipeline's own state machine show through: a composite of
    ``created`` changes nothing, and a pipeline that had finished (or is
    canceling or running) goes back to ``running``, not ``pending``, when a retry
    gives it a pending job again (its ``enqueue`` event).
    A pipeline without jobs is ``success``, as ``StatusCollection#status_for_array``
    answers (Composite gives nil and it falls back to success); GitLab itself never
    creates such a pipeline.
    """
    status = _composite(latest(jobs))
    if status == "created":
        return current
    if status == "pending":
        return _PIPELINE_ENQUEUE.get(current, "pending")
    return status


def process_pipeline(jobs: Sequence[JobState]) -> dict[int, str]:
    """The changes GitLab's atomic processing makes, as {job id: new status}.

    Only ``created`` latest attempts move. A job looks at its needed jobs when it
    has ``needs`` and at every job of the earlier stages otherwise; once that
    status is complete, the job is enqueued, actionized, scheduled or skipped
    (``Ci::ProcessBuildService``). A decision can unblock later jobs, so this
    repeats until nothing changes, which is where GitLab's re-scheduled
    PipelineProcessWorker runs end up.
    """
    current = {job.id: job for job in latest(jobs)}
    changes: dict[int, str] = {}
    progressed = True
    while progressed:
        progressed = False
        for job in sorted(current.values(), key=lambda job: (job.stage_idx, job.id)):
            if job.status != "created":
                continue
            previous = _status_of_previous_jobs(job, current.values())
            if previous not in COMPLETED:
                continue
            new = _process(job, previous)
            current[job.id] = replace(job, status=new)
            changes[job.id] = new
            progressed = True
    return changes


def reset_skipped_after(jobs: Sequence[JobState], job: JobState) -> dict[int, str]:
    """``Ci::ResetSkippedJobsService`` for a retried or played ``job``: {job id: "created"}.

    Every skipped latest attempt in a later stage, or needing ``job`` directly or
    through other needs, goes back to ``created`` (the ``process`` event), so that
    processing decides again: manual ones become manual again, the others pending
    or skipped. Skipped jobs of the same or earlier stages that do not need it stay.
    """
    current = latest(jobs)
    dependents = _needs_descendants(current, job.name)
    return {
        other.id: "created"
        for other in current
        if other.status == "skipped" and (other.stage_idx > job.stage_idx or other.name in dependents)
    }


def _composite(jobs: Iterable[JobState]) -> str:
    """``StatusCollection#status_for_array``: the composite, ``success`` when there is nothing."""
    return composite((job.status, job.allow_failure) for job in jobs) or "success"


def _ignored(job: JobState) -> bool:
    """A manual job allowed to fail: Composite's ``ignored``, it never blocks."""
    return job.allow_failure and job.status in IGNORED


def _status_of_previous_jobs(job: JobState, current: Iterable[JobState]) -> str:
    """``AtomicProcessingService#status_of_previous_jobs``.

    For a DAG job, Composite with ``dag: true``: one needed job that was skipped,
    or is a manual job allowed to fail, skips it, since that need will not run.
    """
    if job.needs is None:
        return _composite(other for other in current if other.stage_idx < job.stage_idx)
    needed = [other for other in current if other.name in job.needs]
    if any(other.status == "skipped" or _ignored(other) for other in needed):
        return "skipped"
    return _composite(needed)


def _process(job: JobState, previous: str) -> str:
    """``Ci::ProcessBuildService#execute``: where a created job goes once what precedes it is complete."""
    if previous not in _valid_previous_statuses(job):
        return "skipped"
    if job.enqueue_immediately:
        return "pending"
    if job.when == "delayed":
        return "scheduled"
    if job.when == "manual":
        return "manual"
    return "pending"


def _valid_previous_statuses(job: JobState) -> frozenset[str]:
    """What the preceding jobs must have ended as for ``job.when`` to run; anything else skips it."""
    if job.when in ("on_success", "manual", "delayed"):
        # A DAG job does not run after a skipped need; a stage job runs after a skipped stage.
        return frozenset({"success"}) if job.needs is not None else frozenset({"success", "skipped"})
    return _RUNS_AFTER.get(job.when, frozenset())


def _needs_descendants(jobs: Sequence[JobState], name: str) -> set[str]:
    """Names of the jobs that need ``name``, directly or through other needs."""
    found: set[str] = set()
    frontier = {name}
    while frontier:
        found |= frontier
        frontier = {job.name for job in jobs if job.needs and not found.isdisjoint(job.needs)} - found
    found.discard(name)
    return found
