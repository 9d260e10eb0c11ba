"""Statements on pipelines and their commits."""

from __future__ import annotations

from jobsvc.storage.queries.conn import Group
from jobsvc.storage.rows import Row


class Pipelines(Group):
    async def ref_known(self, project_id: int, ref: str) -> bool:
        """Whether a ref has pipelines or is a protected branch."""
        row = await self.c.fetchone(
            """SELECT EXISTS (SELECT 1 FROM pipelines WHERE project_id = :p AND ref = :r)
                   OR EXISTS (SELECT 1 FROM protected_branches WHERE project_id = :p AND name = :r) AS known""",
            {"p": project_id, "r": ref},
        )
        return bool(row and row["known"])

    async def latest_for_ref(self, project_id: int, ref: str) -> Row | None:
        return await self.c.fetchone(
            "SELECT sha, tag FROM pipelines WHERE project_id = ? AND ref = ? ORDER BY id DESC LIMIT 1",
            (project_id, ref),
        )

    async def next_iid(self, project_id: int) -> int:
        row = await self.c.fetchone(
            "SELECT COALESCE(MAX(iid), 0) + 1 AS iid FROM pipelines WHERE project_id = ?", (project_id,)
        )
        return row["iid"] if row else 1

    async def create(self, iid: int, project_id: int, ref: str, sha: str, tag: int, user_id: int, now: str) -> int:
        return await self.c.insert(
            """INSERT INTO pipelines (iid, project_id, ref, sha, tag, source, status, user_id, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, 'api', 'created', ?, ?, ?)""",
            (iid, project_id, ref, sha, tag, user_id, now, now),
        )

    async def add_api_commit(self, project_id: int, sha: str, when: str) -> None:
        """The commit row of a pipeline made over the API, unless the sha has one already."""
        await self.c.execute(
            """INSERT INTO commits (project_id, sha, title, message, author_name, author_email,
                   authored_date, committer_name, committer_email, committed_date, created_at)
               VALUES (?, ?, 'Pipeline created over the API', 'Pipeline created over the API', 'jobsvc',
                       'jobsvc@localhost', ?, 'jobsvc', 'jobsvc@localhost', ?, ?)
               ON CONFLICT (project_id, sha) DO NOTHING""",
            (project_id, sha, when, when, when),
        )

    async def add_job(self, values: tuple[object, ...]) -> int:
        """A job of a new pipeline, ``created``; ``values`` in the order of the columns below."""
        return await self.c.insert(
            """INSERT INTO jobs (project_id, pipeline_id, name, stage, stage_idx, status, "when", allow_failure,
                   user_id, before_script, script, after_script, variables, tags, needs, artifacts_spec,
                   start_in, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, 'created', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            values,
        )

    async def status(self, pipeline_id: int) -> str | None:
        row = await self.c.fetchone("SELECT status FROM pipelines WHERE id = ?", (pipeline_id,))
        return row["status"] if row else None

    async def job_times(self, pipeline_id: int) -> Row | None:
        """The first start and the last finish among the pipeline's latest jobs."""
        return await self.c.fetchone(
            """SELECT min(started_at) AS started, max(finished_at) AS finished FROM jobs
                WHERE pipeline_id = ? AND retried = 0""",
            (pipeline_id,),
        )

    async def set_status(
        self, pipeline_id: int, status: str, now: str, started: str | None, finished: str | None
    ) -> None:
        await self.c.execute(
            """UPDATE pipelines SET status = ?, updated_at = ?, started_at = COALESCE(started_at, ?), finished_at = ?
                WHERE id = ?""",
            (status, now, started, finished, pipeline_id),
        )
