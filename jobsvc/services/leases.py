"""Leases: a background task that must run in one process at a time takes one before each round.

Processes sharing a database (PostgreSQL) race for the lease; the holder renews it each round,
and if it dies, another takes over once the lease has expired. One process on SQLite has nobody
to share with and skips the write (``shared=False``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from jobsvc.domain.timefmt import format_utc, utcnow
from jobsvc.storage.repo import Repository
from jobsvc.storage.unit import Unit

HOLDER = uuid.uuid4().hex  # this process


class Lease:
    def __init__(self, repo: Repository, name: str, ttl: float, *, shared: bool, holder: str = HOLDER):
        self.repo, self.name, self.ttl, self.shared, self.holder = repo, name, ttl, shared, holder

    async def take(self) -> bool:
        """Take or renew the lease for ``ttl`` seconds; False while another process holds it."""
        if not self.shared:
            return True
        now = utcnow()
        until = format_utc(now + timedelta(seconds=self.ttl))

        async def work(unit: Unit) -> bool:
            return await unit.instance.take_lease(self.name, self.holder, format_utc(now), until)

        return await self.repo.write(work)
