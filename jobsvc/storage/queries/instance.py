"""Statements on the instance: its settings and personal access tokens."""

from __future__ import annotations

from jobsvc.storage.queries.conn import Group
from jobsvc.storage.rows import Row


class Instance(Group):
    async def setting(self, key: str) -> str | None:
        row = await self.c.fetchone("SELECT value FROM instance_settings WHERE key = ?", (key,))
        return row["value"] if row else None

    async def user_by_name(self, username: str) -> Row | None:
        return await self.c.fetchone("SELECT id FROM users WHERE username = ?", (username,))

    async def add_token(self, values: tuple[object, ...]) -> None:
        """user_id, name, digest, scopes, expires_at, created_at."""
        await self.c.execute(
            """INSERT INTO personal_access_tokens (user_id, name, digest, scopes, expires_at, created_at)
               VALUES (?, ?, ?, ?, ?, ?)""",
            values,
        )

    async def take_lease(self, name: str, holder: str, now: str, until: str) -> bool:
        """Take or renew the lease ``name`` until ``until``; False while another holder's lease runs."""
        changed = await self.c.execute(
            """INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
               ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                WHERE leases.holder = excluded.holder OR leases.expires_at <= ?""",
            (name, holder, until, now),
        )
        return changed > 0

    async def count_request(self, key: str, minute: int) -> int:
        """Count one request for ``key`` in ``minute``; returns the count so far, this one included."""
        await self.c.execute(
            """INSERT INTO rate_counts (key, minute, count) VALUES (?, ?, 1)
               ON CONFLICT (key, minute) DO UPDATE SET count = rate_counts.count + 1""",
            (key, minute),
        )
        row = await self.c.fetchone("SELECT count FROM rate_counts WHERE key = ? AND minute = ?", (key, minute))
        return row["count"] if row else 1

    async def forget_counts_before(self, minute: int) -> None:
        await self.c.execute("DELETE FROM rate_counts WHERE minute < ?", (minute,))
