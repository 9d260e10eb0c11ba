"""Statements on jobs, among them the one place that writes a job's status."""

from __future__ import annotations

from collections.abc import Mapping

from jobsvc.domain import statemachine
from jobsvc.storage.queries.conn import Group
from jobsvc.storage.rows import Row

PAYLOAD_JOB = """
SELECT j.*, p.iid AS p_iid, p.ref AS p_ref, p.tag AS p_tag, p.sha AS p_sha, p.before_sha AS p_before_sha,
       p.source AS p_source, p.created_at AS p_created_at,
       pr.path_with_namespace AS pr_path, pr.name AS pr_name, pr.visibility AS pr_visibility,
       pr.default_branch AS pr_default_branch,
       c.title AS c_title, c.message AS c_message,
       u.username AS u_username, u.name AS u_name, u.email AS u_email,
       r.description AS r_description, r.tags AS r_tags,
       EXISTS (SELECT 1 FROM protected_branches pb WHERE pb.project_id = j.project_id AND pb.name = p.ref) AS protected
  FROM jobs j
  JOIN pipelines p ON p.id = j.pipeline_id
  JOIN projects pr ON pr.id = j.project_id
  LEFT JOIN commits c ON c.project_id = p.project_id AND c.sha = p.sha
  LEFT JOIN users u ON u.id = j.user_id
  LEFT JOIN runners r ON r.id = j.runner_id
 WHERE j.id = ?"""

PAYLOAD_DEPENDENCIES = """
SELECT j.id, j.name, j.stage_idx, a.filename, a.size, a.expire_at
  FROM jobs j JOIN job_artifacts a ON a.job_id = j.id AND a.file_type = 'archive'
 WHERE j.pipeline_id = ? AND j.retried = 0 AND j.stage_idx < ?
 ORDER BY j.stage_idx, j.id"""

# the columns that may be set beside a status change (never client input: names are spliced in)
STATUS_EXTRAS = frozenset({
    "failure_reason", "user_id", "job_variables", "runner_id", "token_digest", "scheduled_at",
})  # fmt: skip


class Jobs(Group):
    async def set_status(
        self,
        job_id: int,
        expected: str,
        new: str,
        now: str,
        extra: Mapping[str, object] | None = None,
        *,
        fill: tuple[str, ...] = (),
    ) -> bool:
        """Move a job from ``expected`` to ``new``: the one job-status writer.

        The state machine's timestamp table says which columns become ``now`` (queued_at on pending,
        started_at on running, finished_at on the finished statuses); ``fill`` names columns set to
        ``now`` only when still empty; ``extra`` gives other columns (of STATUS_EXTRAS). The UPDATE is
        guarded by the expected status, so of two racing changes one wins; returns whether this one did.
        """
        extra = extra or {}
        unknown = set(extra) - STATUS_EXTRAS
        assert not unknown, f"not a column set with a status: {unknown}"
        columns: dict[str, object] = {
            "status": new, "updated_at": now, **dict.fromkeys(statemachine.timestamps_for(new), now), **extra,
        }  # fmt: skip
        assignments = [f'"{name}" = ?' for name in columns]
        values = list(columns.values())
        for name in fill:
            if name not in columns:
                assignments.append(f'"{name}" = COALESCE("{name}", ?)')
                values.append(now)
        changed = await self.c.execute(
            f"UPDATE jobs SET {', '.join(assignments)} WHERE id = ? AND status = ?",  # noqa: S608 - fixed names
            (*values, job_id, expected),
        )
        return changed > 0

    async def for_action(self, job_id: int) -> Row | None:
        """The whole job, with its runner's features (``runner_info``), for cancel, retry, play and erase."""
        return await self.c.fetchone(
            """SELECT j.*, r.info AS runner_info FROM jobs j LEFT JOIN runners r ON r.id = j.runner_id
                WHERE j.id = ?""",
            (job_id,),
        )

    async def status(self, job_id: int) -> Row | None:
        """status and erased_at: whether a runner may still write for the job."""
        return await self.c.fetchone("SELECT status, erased_at FROM jobs WHERE id = ?", (job_id,))

    async def for_runner(self, job_id: int) -> Row | None:
        return await self.c.fetchone(
            "SELECT id, status, token_digest, erased_at, pipeline_id, project_id FROM jobs WHERE id = ?", (job_id,)
        )

    async def by_token_digest(self, digest: str) -> Row | None:
        return await self.c.fetchone(
            "SELECT id, status, project_id, pipeline_id, stage_idx, needs FROM jobs WHERE token_digest = ?",
            (digest,),
        )

    async def dependency(self, job_id: int) -> Row | None:
        return await self.c.fetchone(
            "SELECT id, name, project_id, pipeline_id, stage_idx FROM jobs WHERE id = ?", (job_id,)
        )

    async def project_id(self, job_id: int) -> int | None:
        row = await self.c.fetchone("SELECT project_id FROM jobs WHERE id = ?", (job_id,))
        return row["project_id"] if row else None

    async def pipeline_id(self, job_id: int) -> int | None:
        row = await self.c.fetchone("SELECT pipeline_id FROM jobs WHERE id = ?", (job_id,))
        return row["pipeline_id"] if row else None

    async def touch(self, job_id: int, now: str) -> None:
        await self.c.execute("UPDATE jobs SET updated_at = ? WHERE id = ?", (now, job_id))

    async def mark_retried(self, job_id: int) -> bool:
        """Ci::RetryJobService's first step; False when another retry got there first."""
        return await self.c.execute("UPDATE jobs SET retried = 1 WHERE id = ? AND retried = 0", (job_id,)) > 0

    async def clone(self, job_id: int, status: str, user_id: int, now: str) -> int:
        """A new attempt of a job in the same pipeline and stage; returns its id."""
        return await self.c.insert(
            """INSERT INTO jobs (project_id, pipeline_id, name, stage, stage_idx, status, "when", allow_failure,
                   user_id, before_script, script, after_script, variables, job_variables, tags, needs,
                   artifacts_spec, timeout, created_at, updated_at, queued_at)
               SELECT project_id, pipeline_id, name, stage, stage_idx, ?, "when", allow_failure, ?, before_script,
                   script, after_script, variables, job_variables, tags, needs, artifacts_spec, timeout, ?, ?, ?
                 FROM jobs WHERE id = ?""",
            (status, user_id, now, now, None, job_id),
        )

    async def set_job_variables(self, job_id: int, stored: str) -> None:
        await self.c.execute("UPDATE jobs SET job_variables = ? WHERE id = ?", (stored, job_id))

    async def mark_erased(self, job_id: int, user_id: int, now: str) -> None:
        await self.c.execute(
            """UPDATE jobs SET erased_at = ?, erased_by = ?, artifacts_expire_at = NULL, updated_at = ?
                WHERE id = ?""",
            (now, user_id, now, job_id),
        )

    async def set_artifacts_expire_at(self, job_id: int, expire_at: str | None) -> None:
        await self.c.execute("UPDATE jobs SET artifacts_expire_at = ? WHERE id = ?", (expire_at, job_id))

    async def start_in(self, job_id: int) -> str | None:
        row = await self.c.fetchone("SELECT start_in FROM jobs WHERE id = ?", (job_id,))
        return row["start_in"] if row else None

    async def states(self, pipeline_id: int) -> list[Row]:
        """What the state machine needs of each job of a pipeline, oldest first."""
        return await self.c.fetchall(
            """SELECT id, name, stage_idx, status, "when", allow_failure, retried, needs FROM jobs
                WHERE pipeline_id = ? ORDER BY id""",
            (pipeline_id,),
        )

    async def due(self, now: str) -> list[Row]:
        """Scheduled jobs whose time has come."""
        return await self.c.fetchall(
            "SELECT id, pipeline_id FROM jobs WHERE status = 'scheduled' AND scheduled_at <= ? ORDER BY id", (now,)
        )

    async def next_due(self) -> str | None:
        row = await self.c.fetchone("SELECT min(scheduled_at) AS due FROM jobs WHERE status = 'scheduled'")
        return row["due"] if row else None

    async def pending_summary(self) -> Row | None:
        return await self.c.fetchone(
            "SELECT count(*) AS n, max(id) AS newest, max(updated_at) AS updated FROM jobs WHERE status = 'pending'"
        )

    async def pending_candidates(self, runner_id: int, *, shared: bool, after: int) -> list[Row]:
        """The next 200 pending jobs after ``after`` that a runner might take, oldest first."""
        projects = "" if shared else "AND j.project_id IN (SELECT project_id FROM runner_projects WHERE runner_id = ?)"
        params = (after,) if shared else (after, runner_id)
        return await self.c.fetchall(
            f"""SELECT j.id, j.tags, j.project_id,
                       EXISTS (SELECT 1 FROM protected_branches pb
                                WHERE pb.project_id = j.project_id AND pb.name = p.ref) AS protected
                  FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id
                 WHERE j.status = 'pending' AND j.id > ? {projects}
                 ORDER BY j.id LIMIT 200""",  # noqa: S608 - a fixed fragment
            params,
        )

    async def for_payload(self, job_id: int) -> Row | None:
        """The job with its pipeline and project, for the runner's job payload."""
        return await self.c.fetchone(PAYLOAD_JOB, (job_id,))

    async def dependencies(self, pipeline_id: int, stage_idx: int) -> list[Row]:
        return await self.c.fetchall(PAYLOAD_DEPENDENCIES, (pipeline_id, stage_idx))
