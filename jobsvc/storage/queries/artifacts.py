"""Statements on job artifacts."""

from __future__ import annotations

from jobsvc.storage.queries.conn import Group
from jobsvc.storage.rows import Row

# which artifacts a delete takes (the log stays: GitLab's "erasable" artifacts)
ERASABLE = "job_id = ? AND file_type != 'trace'"
# expired artifacts the sweeper may remove: not a log, not in a locked pipeline
EXPIRED = """id IN (SELECT a.id FROM job_artifacts a JOIN jobs j ON j.id = a.job_id
                       JOIN pipelines p ON p.id = j.pipeline_id
                      WHERE a.expire_at IS NOT NULL AND a.expire_at <= ? AND a.locked = 0
                        AND a.file_type != 'trace' AND p.artifacts_locked = 0 LIMIT ?)"""
OF_JOB = "job_id = ?"


class Artifacts(Group):
    async def sha256(self, job_id: int, file_type: str) -> str | None:
        row = await self.c.fetchone(
            "SELECT sha256 FROM job_artifacts WHERE job_id = ? AND file_type = ?", (job_id, file_type)
        )
        return row["sha256"] if row else None

    async def add(self, values: tuple[object, ...]) -> None:
        """job_id, project_id, file_type, file_format, filename, size, sha256, store_key, expire_at, created_at."""
        await self.c.execute(
            """INSERT INTO job_artifacts (job_id, project_id, file_type, file_format, filename, size, sha256,
                   store_key, expire_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            values,
        )

    async def put_trace(self, job_id: int, project_id: int, size: int, sha256: str, key: str, now: str) -> None:
        """List a job's log as its ``trace`` artifact, or update the listing."""
        await self.c.execute(
            """INSERT INTO job_artifacts (job_id, project_id, file_type, file_format, filename, size, sha256,
                   store_key, created_at) VALUES (?, ?, 'trace', NULL, 'job.log', ?, ?, ?, ?)
               ON CONFLICT (job_id, file_type) DO UPDATE
                   SET size = excluded.size, sha256 = excluded.sha256, store_key = excluded.store_key""",
            (job_id, project_id, size, sha256, key, now),
        )

    async def trace_key(self, job_id: int) -> str | None:
        """The store key of a job's ``trace`` artifact (its archived log), if it has one."""
        row = await self.c.fetchone(
            "SELECT store_key FROM job_artifacts WHERE job_id = ? AND file_type = 'trace'", (job_id,)
        )
        return row["store_key"] if row else None

    async def key_known(self, key: str) -> bool:
        return await self.c.fetchone("SELECT 1 AS known FROM job_artifacts WHERE store_key = ?", (key,)) is not None

    async def all_keys(self) -> set[str]:
        return {row["store_key"] for row in await self.c.fetchall("SELECT store_key FROM job_artifacts")}

    async def keys_between(self, after: str, upto: str, limit: int) -> list[Row]:
        """The store key and created_at of the first ``limit`` rows whose key is in ``(after, upto]``, in key
        order (the orphan sweep's batches; index job_artifacts_store_key)."""
        return await self.c.fetchall(
            """SELECT store_key, created_at FROM job_artifacts WHERE store_key > ? AND store_key <= ?
                ORDER BY store_key LIMIT ?""",
            (after, upto, limit),
        )

    async def count(self, job_id: int) -> int:
        row = await self.c.fetchone("SELECT count(*) AS n FROM job_artifacts WHERE job_id = ?", (job_id,))
        return row["n"] if row else 0

    async def archive_expiry(self, job_id: int) -> Row | None:
        return await self.c.fetchone(
            "SELECT expire_at FROM job_artifacts WHERE job_id = ? AND file_type = 'archive'", (job_id,)
        )

    async def keep(self, job_id: int) -> None:
        await self.c.execute("UPDATE jobs SET artifacts_expire_at = NULL WHERE id = ?", (job_id,))
        await self.c.execute("UPDATE job_artifacts SET expire_at = NULL WHERE job_id = ?", (job_id,))

    async def keys(self, where: str, params: tuple[object, ...]) -> list[str]:
        """The store keys of the artifacts ``where`` (one of this module's conditions) selects."""
        rows = await self.c.fetchall(f"SELECT store_key FROM job_artifacts WHERE {where}", params)  # noqa: S608
        return [row["store_key"] for row in rows]

    async def delete(self, where: str, params: tuple[object, ...]) -> list[str]:
        """Delete the artifacts ``where`` selects; returns their store keys, for the files to go after."""
        rows = await self.c.fetchall(f"SELECT id, store_key FROM job_artifacts WHERE {where}", params)  # noqa: S608
        for row in rows:
            await self.c.execute("DELETE FROM job_artifacts WHERE id = ?", (row["id"],))
        return [row["store_key"] for row in rows]

    async def expire_project(self, project_id: int, now: str) -> int:
        """Mark a project's artifacts expired, but those of locked pipelines and of each ref's latest success."""
        return await self.c.execute(
            """UPDATE job_artifacts SET expire_at = ?
                WHERE project_id = ? AND file_type != 'trace' AND locked = 0
                  AND job_id IN (
                      SELECT j.id FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id
                       WHERE j.project_id = ? AND p.artifacts_locked = 0
                         AND p.id NOT IN (SELECT max(id) FROM pipelines
                                           WHERE project_id = ? AND status = 'success' GROUP BY ref))""",
            (now, project_id, project_id, project_id),
        )
