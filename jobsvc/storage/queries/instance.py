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
