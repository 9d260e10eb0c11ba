"""What requests reuse (jobsvc.http.cache): kept only while the database stays the same.

The HTTP tests change the database between two requests, through the app's own write path or through
another connection (as another process would), and check that the second request sees the change. They
run on both backends: PostgreSQL caches nothing, so the answers must be the same there.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from jobsvc.domain.timefmt import format_utc
from jobsvc.http import entities
from jobsvc.http.cache import VersionedCache
from jobsvc.http.handlers import jobjson
from jobsvc.http.keys import CREDENTIALS, DB, JOB_JSON, RECORDS, REPO
from tests.conftest import RUNNING_JOB_TOKEN, auth

JOB8 = "/api/v4/projects/1/jobs/8"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


async def change(client, sql: str) -> None:
    """One statement through the app's own write path."""

    async def work(unit):
        await unit.tx.execute(sql)

    await client.app[REPO].write(work)


def caching(client) -> bool:
    return client.app[DB].data_version() is not None


# --- VersionedCache ----------------------------------------------------------------------------


def test_an_entry_is_read_back_at_its_version_only():
    cache: VersionedCache[str, str] = VersionedCache(10)
    cache.put("a", 1, "x")
    assert cache.get("a", 1) == "x"
    assert cache.get("a", 2) is None  # a newer version drops everything
    assert len(cache) == 0
    cache.put("a", 1, "old")  # a request that began before the change keeps nothing
    assert cache.get("a", 2) is None
    cache.put("a", 2, "new")
    assert cache.get("a", 1) is None  # nor does it read what newer requests kept
    assert cache.get("a", 2) == "new"


def test_no_version_no_cache():
    cache: VersionedCache[str, str] = VersionedCache(10)
    cache.put("a", None, "x")
    assert cache.get("a", None) is None
    assert len(cache) == 0


@pytest.mark.parametrize(
    "until,now,hit",
    [
        (None, None, True),
        (NOW, NOW - timedelta(seconds=1), True),
        (NOW, NOW, False),
        (NOW, NOW + timedelta(hours=1), False),
        (NOW, None, False),  # an entry with an end needs a clock to be read
    ],
)
def test_an_entry_with_an_end_is_a_miss_from_then_on(until, now, hit):
    cache: VersionedCache[str, str] = VersionedCache(10)
    cache.put("a", 1, "x", until)
    assert (cache.get("a", 1, now) == "x") is hit


def test_the_oldest_entries_go_first_when_full():
    cache: VersionedCache[str, bytes] = VersionedCache(10, len)
    for key in "abcd":
        cache.put(key, 1, b"123")
    assert [cache.get(key, 1) for key in "abcd"] == [None, b"123", b"123", b"123"]
    cache.put("b", 1, b"1234567")  # replacing an entry frees its own weight first
    assert [cache.get(key, 1) for key in "bcd"] == [b"1234567", None, b"123"]
    cache.put("big", 1, b"x" * 11)  # heavier than the whole cache: not kept, nothing dropped
    assert cache.get("big", 1) is None
    assert cache.get("d", 1) == b"123"


# --- when a job's entity changes with the clock --------------------------------------------------


def _row(**columns):
    row = {
        "queued_at": None,
        "started_at": None,
        "finished_at": None,
        "runner_id": None,
        "r_description": None,
        "r_contacted_at": None,
        "artifacts": "[]",
    }
    row.update(columns)
    return row


def _archive(expire_at):
    return f'[["archive", 10, "artifacts.zip", "zip", {"null" if expire_at is None else repr(expire_at)}, 0]]'.replace(
        "'", '"'
    )


T = format_utc
FINISHED = {"queued_at": T(NOW - timedelta(hours=3)), "started_at": T(NOW - timedelta(hours=2)), "finished_at": T(NOW)}
RUNNER = {"runner_id": 1, "r_description": "docker"}


@pytest.mark.parametrize(
    "row,counts",
    [
        (_row(), False),  # created: never queued
        (_row(queued_at=T(NOW)), True),  # pending: its queued duration counts
        (_row(queued_at=T(NOW), started_at=T(NOW)), True),  # running: its duration counts
        (_row(queued_at=T(NOW), finished_at=T(NOW)), True),  # canceled while pending: still counts
        (_row(**FINISHED), False),
        (_row(started_at=T(NOW), finished_at=T(NOW)), False),
    ],
)
def test_counts_time(row, counts):
    assert entities.counts_time(row) is counts


@pytest.mark.parametrize(
    "row,until",
    [
        (_row(), entities.FOREVER),
        (_row(queued_at=T(NOW), started_at=T(NOW)), entities.FOREVER),  # running: but for its durations
        (_row(**FINISHED), entities.FOREVER),
        (_row(**FINISHED, **RUNNER), entities.FOREVER),  # never contacted: offline for good
        (_row(**FINISHED, **RUNNER, r_contacted_at=T(NOW - timedelta(minutes=30))), NOW + timedelta(minutes=90)),
        (_row(**FINISHED, **RUNNER, r_contacted_at=T(NOW - timedelta(hours=3))), entities.FOREVER),
        (_row(**FINISHED, runner_id=1, r_contacted_at=T(NOW)), entities.FOREVER),  # a runner since deleted
        (_row(**FINISHED, artifacts=_archive(T(NOW + timedelta(days=1)))), NOW + timedelta(days=1, seconds=-1)),
        (_row(**FINISHED, artifacts=_archive(T(NOW - timedelta(days=1)))), entities.FOREVER),  # expired
        (_row(**FINISHED, artifacts=_archive(None)), entities.FOREVER),
        (_row(**FINISHED, artifacts=_archive(T(NOW + timedelta(milliseconds=500)))), None),  # about to expire
        (_row(**FINISHED, **RUNNER, r_contacted_at="yesterday"), None),  # not a time: never kept
    ],
)
def test_stable_until(row, until):
    assert entities.stable_until(row, NOW, format_utc(NOW)) == until


# --- over HTTP: every change is seen by the next request ---------------------------------------------


async def test_a_revoked_token_is_refused_by_the_next_request(client):
    assert (await client.get(JOB8, headers=auth("developer"))).status == 200
    await change(client, "UPDATE personal_access_tokens SET revoked = 1 WHERE user_id = 3")
    resp = await client.get(JOB8, headers=auth("developer"))
    assert resp.status == 401
    assert (await resp.json())["error_description"] == "Token was revoked. You have to re-authorize from the user."


async def test_a_token_expires_at_midnight_without_any_write(client, monkeypatch):
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    await change(client, f"UPDATE personal_access_tokens SET expires_at = '{tomorrow.isoformat()}' WHERE user_id = 3")
    assert (await client.get(JOB8, headers=auth("developer"))).status == 200
    monkeypatch.setattr("jobsvc.http.auth.today", lambda: tomorrow)
    resp = await client.get(JOB8, headers=auth("developer"))
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_token"


async def test_a_blocked_user_is_refused_by_the_next_request(client):
    assert (await client.get(JOB8, headers=auth("developer"))).status == 200
    await change(client, "UPDATE users SET state = 'blocked' WHERE id = 3")
    resp = await client.get(JOB8, headers=auth("developer"))
    assert resp.status == 403
    assert await resp.json() == {"message": "403 Forbidden - Your account has been blocked."}


async def test_a_removed_membership_is_honoured_by_the_next_request(client):
    assert (await client.get("/api/v4/projects/1/jobs", headers=auth("developer"))).status == 200
    await change(client, "DELETE FROM members WHERE user_id = 3 AND project_id = 1")
    resp = await client.get("/api/v4/projects/1/jobs", headers=auth("developer"))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Project Not Found"}


async def test_a_lowered_access_level_is_honoured_by_the_next_request(client):
    assert (await client.get(JOB8, headers=auth("developer"))).status == 200
    await change(client, "UPDATE members SET access_level = 10 WHERE user_id = 3 AND project_id = 1")  # guest
    assert (await client.get(JOB8, headers=auth("developer"))).status == 403


async def test_a_job_token_stops_working_when_its_job_ends(client):
    assert (await client.get("/api/v4/job", headers={"JOB-TOKEN": RUNNING_JOB_TOKEN})).status == 200
    resp = await client.put("/api/v4/jobs/11", data={"token": RUNNING_JOB_TOKEN, "state": "success"})
    assert resp.status == 200, await resp.text()
    assert (await client.get("/api/v4/job", headers={"JOB-TOKEN": RUNNING_JOB_TOKEN})).status == 401


async def test_a_cancelled_job_shows_in_the_next_answers(client):
    before = await (await client.get("/api/v4/projects/1/jobs/10", headers=auth("root"))).json()
    listed = await (await client.get("/api/v4/projects/1/jobs?scope=manual", headers=auth("root"))).json()
    assert before["status"] == "manual" and 10 in [job["id"] for job in listed]
    resp = await client.post("/api/v4/projects/1/jobs/10/play", headers=auth("maintainer"))
    assert resp.status == 200, await resp.text()
    after = await (await client.get("/api/v4/projects/1/jobs/10", headers=auth("root"))).json()
    assert after["status"] == "pending"
    listed = await (await client.get("/api/v4/projects/1/jobs?scope=manual", headers=auth("root"))).json()
    assert 10 not in [job["id"] for job in listed]


async def test_a_renamed_user_shows_in_every_job_of_theirs(client):
    await client.get("/api/v4/projects/1/jobs", headers=auth("root"))
    await change(client, "UPDATE users SET name = 'Someone Else' WHERE id = 1")
    jobs = await (await client.get("/api/v4/projects/1/jobs", headers=auth("root"))).json()
    assert {job["user"]["name"] for job in jobs if job["user"] and job["user"]["id"] == 1} == {"Someone Else"}
    one = await (await client.get("/api/v4/projects/1/jobs/6", headers=auth("root"))).json()
    assert one["user"]["name"] == "Someone Else"


@pytest.mark.sqlite_only
async def test_a_write_by_another_process_is_seen_too(client, config):
    assert (await client.get(JOB8, headers=auth("developer"))).status == 200
    assert client.app[CREDENTIALS] and client.app[RECORDS]
    with sqlite3.connect(config.data_dir / "jobsvc.sqlite3") as other:  # as `jobsvc load` would
        other.execute("UPDATE personal_access_tokens SET revoked = 1 WHERE user_id = 3")
    assert (await client.get(JOB8, headers=auth("developer"))).status == 401


async def test_a_runner_goes_offline_two_hours_after_its_last_contact(client, monkeypatch):
    contact = datetime.now(UTC) - timedelta(minutes=5)
    await change(client, f"UPDATE runners SET contacted_at = '{format_utc(contact)}' WHERE id = 1")
    first = await (await client.get(JOB8, headers=auth("root"))).json()
    assert first["runner"]["online"] is True
    later = contact + timedelta(hours=2, seconds=1)
    monkeypatch.setattr(jobjson, "utcnow", lambda: later)
    second = await (await client.get(JOB8, headers=auth("root"))).json()
    assert (second["runner"]["online"], second["runner"]["status"]) == (False, "offline")
    listed = await (await client.get("/api/v4/projects/1/jobs", headers=auth("root"))).json()
    assert {job["runner"]["online"] for job in listed if job["runner"]} == {False}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v4/projects/1/jobs",
        "/api/v4/projects/1/jobs?per_page=3&page=2",
        "/api/v4/projects/1/jobs?pagination=keyset&per_page=2",
        "/api/v4/projects/1/jobs?scope[]=success&scope[]=failed",
        "/api/v4/projects/1/pipelines/6/jobs?include_retried=true",
        "/api/v4/projects/gitlab-org%2Fgitlab-test/jobs/8",
        JOB8,
    ],
)
async def test_kept_answers_are_the_bytes_a_fresh_one_has(client, path, monkeypatch):
    """The same request: building everything; then, a minute later, twice from the cache, and with the
    cache emptied and switched off (as on PostgreSQL): byte for byte the same body and Link header."""
    clock = [datetime.now(UTC)]
    monkeypatch.setattr(jobjson, "utcnow", lambda: clock[0])

    async def get() -> tuple[bytes, str | None]:
        resp = await client.get(path, headers=auth("root"))
        assert resp.status == 200
        return await resp.read(), resp.headers.get("Link")

    await get()
    if caching(client):
        assert len(client.app[JOB_JSON]) > 0
    clock[0] += timedelta(seconds=61.5)  # a running job's duration, a pending one's queued duration grow
    first = await get()
    second = await get()
    for key in (CREDENTIALS, RECORDS, JOB_JSON):
        client.app[key].clear()
    original = client.app[DB].data_version
    client.app[DB].data_version = lambda: None  # type: ignore[method-assign]
    try:
        third = await get()
    finally:
        client.app[DB].data_version = original  # type: ignore[method-assign]
    assert first == second == third


async def test_a_job_of_another_project_is_not_served_from_the_cache(client):
    assert (await client.get(JOB8, headers=auth("root"))).status == 200
    resp = await client.get("/api/v4/projects/2/jobs/8", headers=auth("root"))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Not found"}
