"""The rate limiter of several processes on one database: the counts live in the database.

One process on SQLite keeps them in memory (jobsvc.domain.ratelimit.RateLimiter); processes
that share PostgreSQL count each request with one upsert, so a user's limit holds however
their requests are spread over the processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from jobsvc.domain.ratelimit import retry_after, window_of
from jobsvc.storage.repo import Repository
from jobsvc.storage.unit import Unit


class SharedRateLimiter:
    def __init__(self, repo: Repository, per_minute: int, clock: Callable[[], float] = time.time):
        self.repo = repo
        self.per_minute = per_minute
        self._clock = clock
        self._forgotten = 0  # counts older than this minute are gone

    async def hit(self, endpoint: str, user_id: int) -> int | None:
        """Count one request; returns the seconds to wait when over the limit, else None."""
        if self.per_minute <= 0:
            return None
        now = self._clock()
        minute = window_of(now)
        forget = minute > self._forgotten

        async def work(unit: Unit) -> int:
            if forget:
                await unit.instance.forget_counts_before(minute)
            return await unit.instance.count_request(f"{endpoint}:{user_id}", minute)

        count = await self.repo.write(work)
        self._forgotten = minute
        return retry_after(count, self.per_minute, now)
