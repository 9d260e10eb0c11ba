"""What processes on one database share through it: rate counts and leases (here over SQLite; the
two-process tests run the same over PostgreSQL)."""

from __future__ import annotations

import pytest

from jobsvc.domain import ratelimit
from jobsvc.services.leases import Lease
from jobsvc.services.ratelimits import SharedRateLimiter
from jobsvc.storage.repo import Repository


@pytest.mark.parametrize(
    ("count", "limit", "now", "expected"),
    [(1, 3, 0.0, None), (3, 3, 59.5, None), (4, 3, 0.0, 60), (4, 3, 59.5, 1), (10, 0, 5.0, None), (61, 60, 130.0, 50)],
)
def test_retry_after(count, limit, now, expected):
    assert ratelimit.retry_after(count, limit, now) == expected


async def test_two_limiters_share_one_count(storage):
    db, _ = storage
    repo = Repository(db)
    clock = [120.0]
    first, second = (SharedRateLimiter(repo, 3, clock=lambda: clock[0]) for _ in range(2))
    assert [await first.hit("jobs_index", 7), await second.hit("jobs_index", 7), await first.hit("jobs_index", 7)] == [
        None,
        None,
        None,
    ]
    assert await second.hit("jobs_index", 7) == 60  # the fourth request of the minute, whichever process counts it
    assert await first.hit("jobs_index", 8) is None  # another user has a count of their own
    clock[0] = 180.0  # the next minute starts afresh, and the old counts are forgotten
    assert await second.hit("jobs_index", 7) is None
    rows = await db.fetchall("SELECT minute FROM rate_counts")
    assert {row["minute"] for row in rows} == {3}


async def test_memory_limiter_counts_alike():
    limiter = ratelimit.RateLimiter(2, clock=lambda: 30.0)
    assert [await limiter.hit("e", 1) for _ in range(3)] == [None, None, 30]


async def test_a_lease_has_one_holder_until_it_expires(storage):
    db, _ = storage
    repo = Repository(db)
    a = Lease(repo, "sweeper", 60, shared=True, holder="a")
    b = Lease(repo, "sweeper", 60, shared=True, holder="b")
    assert await a.take() and not await b.take()
    assert await a.take()  # the holder renews
    await db.write(lambda tx: tx.execute("UPDATE leases SET expires_at = '2000-01-01T00:00:00.000Z'"))
    assert await b.take() and not await a.take()  # a dead holder's lease runs out; another takes over
    assert await Lease(repo, "scheduler", 60, shared=True, holder="a").take()  # leases are by name


async def test_an_unshared_lease_never_writes(storage):
    db, _ = storage
    assert await Lease(Repository(db), "sweeper", 60, shared=False).take()
    assert await db.fetchall("SELECT * FROM leases") == []
