"""Statements on runners."""

from __future__ import annotations

from jobsvc.storage.queries.conn import Group
from jobsvc.storage.rows import Row


class Runners(Group):
    async def add(self, values: tuple[object, ...]) -> int:
        """description, name, token_digest, tags, run_untagged, paused, locked, access_level, maximum_timeout,
        info, created_at; a registered runner is an instance runner (is_shared)."""
        return await self.c.insert(
            """INSERT INTO runners (description, name, token_digest, tags, run_untagged, paused, is_shared, locked,
                   access_level, maximum_timeout, info, created_at)
               VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)""",
            values,
        )

    async def by_token_digest(self, digest: str) -> Row | None:
        return await self.c.fetchone("SELECT * FROM runners WHERE token_digest = ?", (digest,))

    async def delete(self, runner_id: int) -> None:
        await self.c.execute("DELETE FROM runners WHERE id = ?", (runner_id,))

    async def contacted(self, runner_id: int, now: str, info: str) -> None:
        await self.c.execute("UPDATE runners SET contacted_at = ?, info = ? WHERE id = ?", (now, info, runner_id))
