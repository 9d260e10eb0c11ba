"""The one job-status writer (storage.queries.jobs.Jobs.set_status): the state machine's timestamps,
the guard that makes one of two racing changes win, and the columns it may set beside the status."""

from __future__ import annotations

import pytest

from jobsvc.http.keys import DB, REPO

THEN = "2030-01-01T00:00:00.000Z"
LATER = "2030-01-01T00:00:05.000Z"
STAMPS = ("queued_at", "started_at", "finished_at")


async def _fresh_job(client) -> int:
    """A new ``created`` attempt of job 21: no timestamps but created_at and updated_at."""

    async def work(unit):
        return await unit.jobs.clone(21, "created", 1, THEN)

    return await client.app[REPO].write(work)


async def _row(client, job_id: int):
    return await client.app[DB].fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))


@pytest.mark.parametrize(
    ("new", "stamped"),
    [
        ("pending", {"queued_at"}),
        ("running", {"started_at"}),
        ("success", {"finished_at"}),
        ("failed", {"finished_at"}),
        ("canceled", {"finished_at"}),
        ("canceling", set()),
        ("manual", set()),
        ("scheduled", set()),
        ("skipped", set()),
    ],
)
async def test_timestamps_follow_the_state_machine(client, new, stamped):
    job_id = await _fresh_job(client)
    repo = client.app[REPO]
    assert await repo.write(lambda unit: unit.jobs.set_status(job_id, "created", new, LATER))
    row = await _row(client, job_id)
    assert row["status"] == new and row["updated_at"] == LATER
    assert {column for column in STAMPS if row[column] == LATER} == stamped
    assert {column for column in STAMPS if row[column] is None} == set(STAMPS) - stamped


async def test_the_guard_lets_one_of_two_changes_win(client):
    job_id = await _fresh_job(client)
    repo = client.app[REPO]
    assert await repo.write(lambda unit: unit.jobs.set_status(job_id, "created", "pending", LATER))
    assert not await repo.write(lambda unit: unit.jobs.set_status(job_id, "created", "skipped", LATER))
    assert (await _row(client, job_id))["status"] == "pending"


async def test_fill_sets_only_empty_columns_and_extras_are_written(client):
    job_id = await _fresh_job(client)
    repo = client.app[REPO]
    assert await repo.write(lambda unit: unit.jobs.set_status(job_id, "created", "pending", THEN))
    taken = await repo.write(
        lambda unit: unit.jobs.set_status(job_id, "pending", "running", LATER, {"runner_id": None}, fill=("queued_at",))
    )
    row = await _row(client, job_id)
    assert taken and row["queued_at"] == THEN and row["started_at"] == LATER


async def test_only_known_columns_go_beside_a_status(client):
    job_id = await _fresh_job(client)
    with pytest.raises(AssertionError, match="not a column set with a status"):
        await client.app[REPO].write(
            lambda unit: unit.jobs.set_status(job_id, "created", "pending", LATER, {"name": "x"})
        )
