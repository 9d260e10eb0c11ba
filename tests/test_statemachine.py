"""GitLab's job state machine and pipeline processing (jobsvc.domain.statemachine).

The before/after tables restate, as facts, what gitlabhq's
``spec/services/ci/pipeline_processing/test_cases/*.yml`` expect; the
property-based test drives random runner events and user actions through the
same functions and checks the invariants after every step.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import product

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from jobsvc.domain.statemachine import (
    ACTIONABLE_WHEN,
    EVENTS,
    JobState,
    cancelable,
    erasable,
    latest,
    pipeline_status,
    playable,
    process_pipeline,
    reset_skipped_after,
    retryable,
    timestamps_for,
    transition,
)
from jobsvc.domain.statuses import COMPLETED, FINISHED, STATUSES

BUILD, TEST, DEPLOY = 0, 1, 2


def job(name: str, stage: int, status: str = "created", **options: object) -> dict[str, object]:
    return {"name": name, "stage_idx": stage, "status": status, **options}


def jobs(*rows: dict[str, object]) -> list[JobState]:
    """JobStates numbered in order, so that a later attempt of a name has the higher id."""
    return [JobState(id=number, **row) for number, row in enumerate(rows, 1)]  # type: ignore[arg-type]


def by_name(states: list[JobState], changes: dict[int, str]) -> dict[str, str]:
    names = {state.id: state.name for state in states}
    return {names[job_id]: status for job_id, status in changes.items()}


# --- the event table ----------------------------------------------------------------------------

ALIVE = ("created", "waiting_for_resource", "preparing", "waiting_for_callback", "pending", "running")
ALLOWED = {
    **{(status, "enqueue"): "pending" for status in ("created", "skipped", "manual", "scheduled")},
    ("pending", "run"): "running",
    **{(status, "succeed"): "success" for status in ALIVE},
    ("canceling", "succeed"): "canceled",
    **{(status, "drop"): "failed" for status in (*ALIVE, "manual", "scheduled")},
    ("canceling", "drop"): "canceled",
    **{(status, "cancel"): "canceled" for status in (*ALIVE, "scheduled", "manual")},
    **{(status, "skip"): "skipped" for status in ("created", "waiting_for_resource", "preparing", "pending")},
    ("created", "actionize"): "manual",
    ("created", "schedule"): "scheduled",
    ("scheduled", "unschedule"): "manual",
    ("skipped", "process"): "created",
    ("manual", "process"): "created",
}


@pytest.mark.parametrize(("status", "event"), list(product(STATUSES, EVENTS)))
def test_transition_table(status: str, event: str) -> None:
    assert transition(status, event) == ALLOWED.get((status, event))


@pytest.mark.parametrize(
    ("status", "graceful", "force", "expected"),
    [
        ("running", True, False, "canceling"),
        ("running", False, False, "canceled"),
        ("pending", True, False, "canceled"),
        ("canceling", False, False, None),
        ("canceling", True, False, None),
        ("canceling", False, True, "canceled"),
        ("running", False, True, "canceled"),
        ("success", False, True, None),
        ("manual", True, True, "canceled"),
    ],
)
def test_cancel_graceful_and_force(status: str, graceful: bool, force: bool, expected: str | None) -> None:
    assert transition(status, "cancel", graceful_cancel=graceful, force=force) == expected


def test_unknown_event_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown event: explode"):
        transition("pending", "explode")


@pytest.mark.parametrize(
    ("status", "stamps"),
    [
        ("pending", ("queued_at",)),
        ("running", ("started_at",)),
        ("success", ("finished_at",)),
        ("failed", ("finished_at",)),
        ("canceled", ("finished_at",)),
        ("canceling", ()),
        ("skipped", ()),
        ("manual", ()),
        ("scheduled", ()),
        ("created", ()),
    ],
)
def test_timestamps_set_on_entering(status: str, stamps: tuple[str, ...]) -> None:
    assert timestamps_for(status) == stamps


def test_every_transition_into_a_finished_status_sets_finished_at() -> None:
    for (_, _), target in ALLOWED.items():
        assert ("finished_at" in timestamps_for(target)) == (target in FINISHED)


# --- predicates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", STATUSES)
def test_cancelable_is_what_the_cancel_event_accepts(status: str) -> None:
    expected = status in {*ALIVE, "scheduled", "manual"}
    assert cancelable(status) is expected


@pytest.mark.parametrize(("status", "retried"), list(product(STATUSES, (False, True))))
def test_retryable(status: str, retried: bool) -> None:
    assert retryable(status, retried) is (status in {"success", "failed", "canceled", "canceling"} and not retried)


@pytest.mark.parametrize(
    ("status", "when", "retried", "verdict"),
    [
        ("manual", "manual", False, "enqueue"),
        ("scheduled", "delayed", False, "enqueue"),
        ("success", "manual", False, "retry"),
        ("failed", "manual", False, "retry"),
        ("canceled", "delayed", False, "retry"),
        ("failed", "manual", True, None),
        ("skipped", "manual", False, None),
        ("created", "manual", False, None),
        ("pending", "manual", False, None),
        ("running", "manual", False, None),
        ("failed", "on_success", False, None),
        ("manual", "on_success", False, None),
        ("success", "always", False, None),
    ],
)
def test_playable(status: str, when: str, retried: bool, verdict: str | None) -> None:
    assert playable(status, when, retried) == verdict


@pytest.mark.parametrize(("status", "has"), list(product(STATUSES, (False, True))))
def test_erasable(status: str, has: bool) -> None:
    assert erasable(status, has) is (status in COMPLETED and has)


# --- pipeline processing: before / after -------------------------------------------------------------

PROCESSING = [
    pytest.param(
        [job("build", BUILD), job("test", TEST), job("deploy", DEPLOY)],
        {"build": "pending"},
        id="a new pipeline starts its first stage",
    ),
    pytest.param(
        [job("build", BUILD, "success"), job("test", TEST), job("deploy", DEPLOY)],
        {"test": "pending"},
        id="a finished stage starts the next",
    ),
    pytest.param(
        [job("build", BUILD, "success"), job("lint", BUILD, "running"), job("test", TEST)],
        {},
        id="a stage waits for every job of the earlier stages",
    ),
    pytest.param(
        [job("build", BUILD, "failed"), job("test", TEST), job("deploy", DEPLOY)],
        {"test": "skipped", "deploy": "skipped"},
        id="a failure skips the later stages",
    ),
    pytest.param(
        [job("build", BUILD, "failed", allow_failure=True), job("test", TEST)],
        {"test": "pending"},
        id="an allowed failure counts as success",
    ),
    pytest.param(
        [
            job("build", BUILD, "canceled"),
            job("test1", TEST),
            job("test2", TEST, when="on_failure"),
            job("deploy", DEPLOY),
        ],
        {"test1": "skipped", "test2": "skipped", "deploy": "skipped"},
        id="a cancel skips everything after it, on_failure jobs included",
    ),
    pytest.param(
        [
            job("build", BUILD, "canceled", allow_failure=True),
            job("test1", TEST),
            job("test2", TEST, when="on_failure"),
            job("deploy", DEPLOY),
        ],
        {"test1": "pending", "test2": "skipped"},
        id="an allowed cancel counts as success",
    ),
    pytest.param(
        [job("build", BUILD, "failed"), job("test", TEST, when="on_failure"), job("deploy", DEPLOY)],
        {"test": "pending"},
        id="on_failure runs after a failure and the next stage waits for it",
    ),
    pytest.param(
        [job("build", BUILD, "success"), job("test", TEST, when="on_failure"), job("deploy", DEPLOY)],
        {"test": "skipped", "deploy": "pending"},
        id="on_failure is skipped after success and a skipped stage does not stop the next",
    ),
    pytest.param(
        [job("test1", TEST), job("test2", TEST, when="on_failure")],
        {"test1": "pending", "test2": "skipped"},
        id="on_failure with no earlier stage is skipped",
    ),
    pytest.param(
        [job("build", BUILD, "failed"), job("test", TEST, when="always")],
        {"test": "pending"},
        id="always runs after a failure",
    ),
    pytest.param(
        [job("build", BUILD, "success"), job("test", TEST, when="always")],
        {"test": "pending"},
        id="always runs after success",
    ),
    pytest.param(
        [job("build", BUILD, "failed"), job("test", TEST), job("cleanup", DEPLOY, when="always")],
        {"test": "skipped", "cleanup": "pending"},
        id="always runs after a failed and a skipped stage",
    ),
    pytest.param(
        [job("test", TEST, when="manual", allow_failure=False), job("deploy", DEPLOY)],
        {"test": "manual"},
        id="a manual job not allowed to fail blocks the later stages",
    ),
    pytest.param(
        [job("test", TEST, when="manual", allow_failure=True), job("deploy", DEPLOY)],
        {"test": "manual", "deploy": "pending"},
        id="a manual job allowed to fail does not block",
    ),
    pytest.param(
        [job("test", TEST, when="manual", allow_failure=True), job("deploy", DEPLOY, when="on_failure")],
        {"test": "manual", "deploy": "skipped"},
        id="a waiting manual job allowed to fail is no failure",
    ),
    pytest.param(
        [job("build", BUILD, when="delayed"), job("test", TEST)],
        {"build": "scheduled"},
        id="a delayed job is scheduled and blocks the next stage",
    ),
    pytest.param(
        [job("build", BUILD, "success"), job("lint", BUILD, "running"), job("test", TEST, needs=("build",))],
        {"test": "pending"},
        id="needs start a job as soon as its needed jobs finish, whatever the stage",
    ),
    pytest.param(
        [job("build", BUILD), job("test", TEST), job("deploy", DEPLOY, needs=())],
        {"build": "pending", "deploy": "pending"},
        id="needs: [] starts at once",
    ),
    pytest.param(
        [job("build", BUILD, "failed"), job("test", TEST, needs=("build",))],
        {"test": "skipped"},
        id="a failed need skips the job",
    ),
    pytest.param(
        [job("build", BUILD, "failed", allow_failure=True), job("test", TEST, needs=("build",))],
        {"test": "pending"},
        id="a need allowed to fail counts as success",
    ),
    pytest.param(
        [
            job("build", BUILD, "success"),
            job("lint", BUILD, "skipped"),
            job("dag", TEST, needs=("lint",)),
            job("staged", TEST),
        ],
        {"dag": "skipped", "staged": "pending"},
        id="a skipped need skips a DAG job but a skipped stage does not stop a stage job",
    ),
    pytest.param(
        [job("build", BUILD, "failed"), job("test", TEST), job("deploy", DEPLOY, when="always", needs=("test",))],
        {"test": "skipped", "deploy": "pending"},
        id="always with needs runs after a skipped need",
    ),
    pytest.param(
        [job("build", BUILD, "failed"), job("rollback", TEST, when="on_failure", needs=("build",))],
        {"rollback": "pending"},
        id="on_failure with needs runs after a failed need",
    ),
    pytest.param(
        [job("build", BUILD, "success"), job("rollback", TEST, when="on_failure", needs=("build",))],
        {"rollback": "skipped"},
        id="on_failure with needs is skipped after a successful need",
    ),
    pytest.param(
        [
            job("job_a", BUILD, when="manual", allow_failure=True),
            job("job_b", TEST, when="manual", allow_failure=True),
            job("job_c", DEPLOY, needs=("job_b",)),
            job("job_d", DEPLOY, needs=("job_a",)),
        ],
        {"job_a": "manual", "job_b": "manual", "job_c": "skipped", "job_d": "skipped"},
        id="a need on a manual job allowed to fail skips the job",
    ),
    pytest.param(
        [job("test", TEST, when="manual", allow_failure=False), job("deploy", DEPLOY, needs=("test",))],
        {"test": "manual"},
        id="a need on a blocking manual job waits",
    ),
    pytest.param(
        [job("a", TEST, "failed"), job("b", TEST, needs=("a",)), job("c", TEST, needs=("b",))],
        {"b": "skipped", "c": "skipped"},
        id="skips travel along needs in one call",
    ),
    pytest.param(
        [job("c", TEST, needs=("b",)), job("b", TEST, needs=("a",)), job("a", TEST, "failed")],
        {"b": "skipped", "c": "skipped"},
        id="needs resolve whatever order the jobs were defined in",
    ),
    pytest.param(
        [job("build", BUILD, "failed", retried=True), job("build", BUILD, "success"), job("test", TEST)],
        {"test": "pending"},
        id="a retried attempt no longer counts",
    ),
    pytest.param(
        [job("build", BUILD, "success", retried=True), job("build", BUILD, "pending"), job("test", TEST)],
        {},
        id="the latest attempt decides, even when an older one succeeded",
    ),
    pytest.param(
        [job("build", BUILD, "success"), job("old", TEST, "created", retried=True)],
        {},
        id="a retried attempt is never processed",
    ),
    pytest.param(
        [job("build", BUILD, "canceling"), job("test", TEST)],
        {},
        id="a canceling job blocks the next stage",
    ),
    pytest.param(
        [job("build", BUILD, "success"), job("deploy", TEST, when="manual", enqueue_immediately=True)],
        {"deploy": "pending"},
        id="a retried manual job is enqueued, not made manual again",
    ),
    pytest.param(
        [job("build", BUILD, "failed"), job("deploy", TEST, when="manual", enqueue_immediately=True)],
        {"deploy": "skipped"},
        id="a retried manual job is still skipped after a failure",
    ),
    pytest.param(
        [job("build", BUILD, "success"), job("test", TEST, "pending"), job("deploy", DEPLOY, "manual")],
        {},
        id="only created jobs move",
    ),
]


@pytest.mark.parametrize(("rows", "expected"), PROCESSING)
def test_process_pipeline(rows: list[dict[str, object]], expected: dict[str, str]) -> None:
    states = jobs(*rows)
    assert by_name(states, process_pipeline(states)) == expected


@pytest.mark.parametrize(
    ("current", "rows", "expected"),
    [
        pytest.param("success", [job("a", 0, "success", retried=True), job("a", 0, "pending")], "running", id="rerun"),
        pytest.param("failed", [job("a", 0, "pending"), job("b", 1)], "running", id="retried after failing"),
        pytest.param("canceled", [job("a", 0, "pending")], "running", id="retried after cancel"),
        pytest.param("running", [job("a", 0, "pending")], "running", id="stays running"),
        pytest.param("manual", [job("a", 0, "pending"), job("b", 1)], "pending", id="played"),
        pytest.param("skipped", [job("a", 0, "pending")], "pending", id="played after skipped"),
        pytest.param("failed", [job("a", 0, "created")], "failed", id="created changes nothing"),
        pytest.param("pending", [job("a", 0, "running")], "running", id="other statuses are taken as they are"),
        pytest.param("running", [job("a", 0, "failed")], "failed", id="finishes"),
    ],
)
def test_pipeline_status_follows_the_pipeline_state_machine(
    current: str, rows: list[dict[str, object]], expected: str
) -> None:
    assert pipeline_status(jobs(*rows), current) == expected


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param([], "success", id="no jobs"),
        pytest.param([job("a", 0), job("b", 1)], "created", id="all created"),
        pytest.param([job("a", 0, "pending"), job("b", 1)], "pending", id="pending"),
        pytest.param([job("a", 0, "success"), job("b", 1, "running")], "running", id="running"),
        pytest.param([job("a", 0, "success"), job("b", 1)], "running", id="between stages"),
        pytest.param([job("a", 0, "success"), job("b", 1, "manual")], "manual", id="blocked by manual"),
        pytest.param(
            [job("a", 0, "success"), job("b", 1, "manual", allow_failure=True)], "success", id="optional manual"
        ),
        pytest.param([job("a", 0, "manual", allow_failure=True)], "skipped", id="only an optional manual"),
        pytest.param([job("a", 0, "failed", allow_failure=True), job("b", 1, "success")], "success", id="warning"),
        pytest.param([job("a", 0, "failed"), job("b", 1, "skipped")], "failed", id="failed"),
        pytest.param([job("a", 0, "canceled"), job("b", 1, "skipped")], "canceled", id="canceled"),
        pytest.param([job("a", 0, "canceling"), job("b", 0, "success")], "canceling", id="canceling"),
        pytest.param([job("a", 0, "scheduled"), job("b", 0, "success")], "scheduled", id="scheduled"),
        pytest.param(
            [job("a", 0, "failed", retried=True), job("a", 0, "success")], "success", id="latest attempts only"
        ),
    ],
)
def test_pipeline_status(rows: list[dict[str, object]], expected: str) -> None:
    assert pipeline_status(jobs(*rows)) == expected


# --- reset of skipped jobs on retry and play ------------------------------------------------------------


def test_reset_after_a_retry_reopens_skipped_jobs_of_later_stages() -> None:
    states = jobs(
        job("lint", BUILD, "skipped", when="on_failure"),
        job("build", BUILD, "failed"),
        job("rollback", BUILD, "skipped", when="on_failure"),
        job("test", TEST, "skipped"),
        job("review", TEST, "skipped", when="manual"),
        job("deploy", DEPLOY, "skipped"),
        job("done", DEPLOY, "success"),
    )
    build = states[1]
    assert by_name(states, reset_skipped_after(states, build)) == {
        "test": "created",
        "review": "created",
        "deploy": "created",
    }


def test_reset_follows_needs_within_a_stage_and_only_touches_latest_attempts() -> None:
    states = jobs(
        job("build", TEST, "failed"),
        job("test", TEST, "skipped", needs=("build",)),
        job("deploy", TEST, "skipped", needs=("test",)),
        job("other", TEST, "skipped", needs=()),
        job("deploy", TEST, "skipped", retried=True),
    )
    assert reset_skipped_after(states, states[0]) == {2: "created", 3: "created"}


def test_reset_then_processing_makes_manual_jobs_manual_again() -> None:
    states = jobs(
        job("build", BUILD, "failed", retried=True),
        job("build", BUILD, "success"),
        job("review", TEST, "skipped", when="manual"),
        job("test", TEST, "skipped"),
    )
    reset = reset_skipped_after(states, states[1])
    reopened = [replace(state, status=reset.get(state.id, state.status)) for state in states]
    assert by_name(reopened, process_pipeline(reopened)) == {"review": "manual", "test": "pending"}


# --- a small pipeline simulator, shared by the scenarios and the property-based test ----------------------


class Pipeline:
    """Jobs plus the timestamps each has been given, changed only through jobsvc.domain.statemachine."""

    def __init__(self, states: list[JobState]):
        self.jobs = list(states)
        self.stamps: dict[int, set[str]] = {state.id: set() for state in states}
        self.state = "created"
        self.process()

    def current(self, name: str) -> JobState:
        (found,) = [state for state in latest(self.jobs) if state.name == name]
        return found

    def statuses(self) -> dict[str, str]:
        return {state.name: state.status for state in latest(self.jobs)}

    def apply(self, changes: dict[int, str]) -> None:
        retried = {state.id for state in self.jobs if state.retried}
        assert retried.isdisjoint(changes), "only latest attempts change"
        self.jobs = [replace(state, status=changes.get(state.id, state.status)) for state in self.jobs]
        for job_id, status in changes.items():
            self.stamps[job_id].update(timestamps_for(status))
        self.state = pipeline_status(self.jobs, self.state)

    def process(self) -> None:
        self.apply(process_pipeline(self.jobs))

    def fire(self, name: str, event: str, **options: bool) -> str | None:
        state = self.current(name)
        new = transition(state.status, event, **options)
        if new is not None:
            self.apply({state.id: new})
            self.process()
        return new

    def retry(self, name: str) -> None:
        """Ci::RetryJobService: a new created attempt, the old one retried, skipped dependents reopened."""
        old = self.current(name)
        assert retryable(old.status, old.retried)
        new_id = max(state.id for state in self.jobs) + 1
        new = replace(old, id=new_id, status="created", enqueue_immediately=old.when in ACTIONABLE_WHEN)
        self.jobs = [replace(state, retried=True) if state.id == old.id else state for state in self.jobs] + [new]
        self.stamps[new.id] = set()
        self.apply(reset_skipped_after(self.jobs, new))
        self.process()

    def play(self, name: str) -> None:
        """Ci::PlayBuildService: enqueue in place (and reopen skipped dependents), or retry."""
        state = self.current(name)
        verdict = playable(state.status, state.when, state.retried)
        assert verdict is not None
        if verdict == "retry":
            self.retry(name)
            return
        self.apply({state.id: "pending"})
        self.apply(reset_skipped_after(self.jobs, self.current(name)))
        self.process()

    def status(self) -> str:
        return self.state

    def snapshot(self) -> tuple[str, dict[str, str]]:
        return self.state, self.statuses()


# --- scenarios: one user or runner event after another ----------------------------------------------------


def test_failed_build_retried_within_one_stage() -> None:
    pipeline = Pipeline(
        jobs(job("build", TEST), job("test", TEST, needs=("build",)), job("deploy", TEST, needs=("test",)))
    )
    assert pipeline.snapshot() == ("pending", {"build": "pending", "test": "created", "deploy": "created"})
    pipeline.fire("build", "drop")
    assert pipeline.snapshot() == ("failed", {"build": "failed", "test": "skipped", "deploy": "skipped"})
    pipeline.retry("build")
    assert pipeline.snapshot() == ("running", {"build": "pending", "test": "created", "deploy": "created"})
    pipeline.fire("build", "run")
    pipeline.fire("build", "succeed")
    assert pipeline.snapshot() == ("running", {"build": "success", "test": "pending", "deploy": "created"})


def test_optional_manual_job_played_after_the_pipeline_passed() -> None:
    pipeline = Pipeline(jobs(job("test", TEST, when="manual", allow_failure=True), job("deploy", DEPLOY)))
    assert pipeline.snapshot() == ("pending", {"test": "manual", "deploy": "pending"})
    pipeline.fire("deploy", "run")
    pipeline.fire("deploy", "succeed")
    assert pipeline.status() == "success"
    pipeline.play("test")
    assert pipeline.snapshot() == ("running", {"test": "pending", "deploy": "success"})
    pipeline.fire("test", "run")
    pipeline.fire("test", "drop")
    assert pipeline.snapshot() == ("success", {"test": "failed", "deploy": "success"})


def test_playing_a_manual_job_reopens_what_needs_it() -> None:
    pipeline = Pipeline(
        jobs(
            job("job_a", BUILD, when="manual", allow_failure=True),
            job("job_b", TEST, when="manual", allow_failure=True),
            job("job_c", DEPLOY, needs=("job_b",)),
            job("job_d", DEPLOY, needs=("job_a",)),
        )
    )
    assert pipeline.status() == "skipped"
    pipeline.play("job_b")
    assert pipeline.snapshot() == (
        "pending",
        {"job_a": "manual", "job_b": "pending", "job_c": "created", "job_d": "skipped"},
    )


def test_replaying_a_failed_manual_job_enqueues_a_new_attempt() -> None:
    pipeline = Pipeline(jobs(job("test1", TEST), job("test2", TEST, when="manual", allow_failure=True)))
    pipeline.fire("test1", "run")
    pipeline.fire("test1", "succeed")
    assert pipeline.snapshot() == ("success", {"test1": "success", "test2": "manual"})
    pipeline.play("test2")
    pipeline.fire("test2", "run")
    pipeline.fire("test2", "drop")
    assert pipeline.status() == "success"
    pipeline.play("test2")
    assert pipeline.snapshot() == ("running", {"test1": "success", "test2": "pending"})
    assert len(pipeline.jobs) == 3


def test_blocking_manual_job_holds_the_pipeline_until_played() -> None:
    pipeline = Pipeline(jobs(job("test", TEST, when="manual", allow_failure=False), job("deploy", DEPLOY)))
    assert pipeline.status() == "manual"
    pipeline.play("test")
    pipeline.fire("test", "run")
    pipeline.fire("test", "succeed")
    assert pipeline.snapshot() == ("running", {"test": "success", "deploy": "pending"})


def test_graceful_cancel_finishes_canceled_whatever_the_runner_reports() -> None:
    pipeline = Pipeline(jobs(job("build", BUILD), job("lint", BUILD, "success")))
    pipeline.fire("build", "run")
    assert pipeline.fire("build", "cancel", graceful_cancel=True) == "canceling"
    assert pipeline.status() == "canceling"
    assert pipeline.fire("build", "succeed") == "canceled"
    assert pipeline.snapshot() == ("canceled", {"build": "canceled", "lint": "success"})
    assert pipeline.stamps[1] == {"queued_at", "started_at", "finished_at"}


def test_unscheduling_a_delayed_job_makes_it_manual() -> None:
    pipeline = Pipeline(jobs(job("deploy", DEPLOY, when="delayed")))
    assert pipeline.statuses() == {"deploy": "scheduled"}
    pipeline.fire("deploy", "unschedule")
    assert pipeline.snapshot() == ("manual", {"deploy": "manual"})


# --- property-based: random runner events and user actions ----------------------------------------------------

WHENS = ("on_success", "on_success", "on_failure", "always", "manual", "delayed")


@st.composite
def pipelines(draw: st.DrawFn) -> list[JobState]:
    """1-6 jobs over three stages. Needs name jobs defined before, in the same or an earlier stage,
    so they never form a cycle; ids are shuffled so that a job may need one with a higher id."""
    count = draw(st.integers(1, 6))
    ids = draw(st.permutations(range(1, count + 1)))
    states: list[JobState] = []
    for number in range(count):
        stage = draw(st.integers(0, 2))
        candidates = [state.name for state in states if state.stage_idx <= stage]
        some = st.lists(st.sampled_from(candidates), unique=True, max_size=2) if candidates else st.just([])
        states.append(
            JobState(
                id=ids[number],
                name=f"job{number}",
                stage_idx=stage,
                status="created",
                when=draw(st.sampled_from(WHENS)),
                allow_failure=draw(st.booleans()),
                needs=draw(st.none() | some.map(tuple)),
            )
        )
    return states


class PipelineMachine(RuleBasedStateMachine):
    pipeline: Pipeline

    def names(self, *statuses: str) -> list[str]:
        return [state.name for state in latest(self.pipeline.jobs) if not statuses or state.status in statuses]

    @initialize(states=pipelines())
    def create(self, states: list[JobState]) -> None:
        self.pipeline = Pipeline(states)

    @precondition(lambda self: self.names("pending"))
    @rule(data=st.data())
    def runner_takes_a_job(self, data: st.DataObject) -> None:
        self.pipeline.fire(data.draw(st.sampled_from(self.names("pending"))), "run")

    @precondition(lambda self: self.names("running", "canceling"))
    @rule(data=st.data(), event=st.sampled_from(("succeed", "drop")))
    def runner_finishes_a_job(self, data: st.DataObject, event: str) -> None:
        self.pipeline.fire(data.draw(st.sampled_from(self.names("running", "canceling"))), event)

    @rule(data=st.data(), graceful=st.booleans(), force=st.booleans())
    def user_cancels(self, data: st.DataObject, graceful: bool, force: bool) -> None:
        name = data.draw(st.sampled_from(self.names()))
        self.pipeline.fire(name, "cancel", graceful_cancel=graceful, force=force)

    @precondition(lambda self: self.retryable())
    @rule(data=st.data())
    def user_retries(self, data: st.DataObject) -> None:
        self.pipeline.retry(data.draw(st.sampled_from(self.retryable())))

    @precondition(lambda self: self.playable())
    @rule(data=st.data())
    def user_plays(self, data: st.DataObject) -> None:
        self.pipeline.play(data.draw(st.sampled_from(self.playable())))

    @precondition(lambda self: self.names("scheduled"))
    @rule(data=st.data(), event=st.sampled_from(("unschedule", "enqueue")))
    def schedule_moves(self, data: st.DataObject, event: str) -> None:
        self.pipeline.fire(data.draw(st.sampled_from(self.names("scheduled"))), event)

    def retryable(self) -> list[str]:
        return [state.name for state in latest(self.pipeline.jobs) if retryable(state.status, state.retried)]

    def playable(self) -> list[str]:
        return [state.name for state in latest(self.pipeline.jobs) if playable(state.status, state.when, state.retried)]

    @invariant()
    def one_latest_attempt_per_name(self) -> None:
        names = [state.name for state in latest(self.pipeline.jobs)]
        assert sorted(names) == sorted({state.name for state in self.pipeline.jobs})
        assert len(names) == len(set(names))

    @invariant()
    def statuses_are_gitlabs(self) -> None:
        assert {state.status for state in self.pipeline.jobs} <= set(STATUSES)

    @invariant()
    def processing_has_settled(self) -> None:
        assert process_pipeline(self.pipeline.jobs) == {}

    @invariant()
    def pipeline_status_is_consistent_with_its_jobs(self) -> None:
        """Complete exactly when every latest job is complete or an optional manual job."""
        done = all(
            state.status in COMPLETED or (state.status == "manual" and state.allow_failure)
            for state in latest(self.pipeline.jobs)
        )
        assert (self.pipeline.status() in COMPLETED) is done

    @invariant()
    def timestamps_match_statuses(self) -> None:
        for state in self.pipeline.jobs:
            stamps = self.pipeline.stamps[state.id]
            if state.status in FINISHED:
                assert "finished_at" in stamps, state
            if state.status in ("running", "canceling"):
                assert {"queued_at", "started_at"} <= stamps, state
            if state.status == "pending":
                assert "queued_at" in stamps, state


PipelineMachine.TestCase.settings = settings(max_examples=75, stateful_step_count=30, deadline=None, database=None)
TestPipelineMachine = PipelineMachine.TestCase
