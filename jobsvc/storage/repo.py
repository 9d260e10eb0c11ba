"""The repository: the one way to the database, for reads and writes.

Reads run on the backend's reader; ``write(work)`` runs ``work(unit)`` in one transaction
(a unit of work, jobsvc.storage.unit). The list queries of the API live here, and
bench/explain.py checks the plan of each (bench/README.md); the statements of the write side
are grouped in jobsvc.storage.queries and reachable from both (``repo.jobs``, ``unit.jobs``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from jobsvc.storage.db import Tx
from jobsvc.storage.rows import Backend, Page, Row
from jobsvc.storage.unit import Statements, Unit

T = TypeVar("T")
MAX_COUNT_PLUS_ONE = 10_001

USER_COLUMNS = """
    {a}.id AS {p}id, {a}.username AS {p}username, {a}.name AS {p}name, {a}.state AS {p}state,
    {a}.avatar_url AS {p}avatar_url, {a}.created_at AS {p}created_at, {a}.bio AS {p}bio,
    {a}.location AS {p}location, {a}.public_email AS {p}public_email, {a}.linkedin AS {p}linkedin,
    {a}.twitter AS {p}twitter, {a}.website_url AS {p}website_url, {a}.organization AS {p}organization,
    {a}.job_title AS {p}job_title, {a}.bot AS {p}bot"""

JOB_SELECT = f"""
SELECT j.id, j.status, j.stage, j.name, j.coverage, j.allow_failure, j.created_at, j.started_at,
       j.finished_at, j.erased_at, j.queued_at, j.failure_reason, j.artifacts_expire_at, j.tags,
       j.project_id, j.pipeline_id, j."when", j.retried, j.user_id, j.runner_id, j.variables, j.job_variables,
       p.iid AS p_iid, p.ref AS p_ref, p.tag AS p_tag, p.sha AS p_sha, p.status AS p_status,
       p.source AS p_source, p.created_at AS p_created_at, p.updated_at AS p_updated_at,
       pr.path_with_namespace AS pr_path, pr.ci_job_token_scope_enabled AS pr_token_scope,
       c.title AS c_title, c.message AS c_message, c.author_name AS c_author_name,
       c.author_email AS c_author_email, c.authored_date AS c_authored_date,
       c.committer_name AS c_committer_name, c.committer_email AS c_committer_email,
       c.committed_date AS c_committed_date, c.created_at AS c_created_at, c.parent_ids AS c_parent_ids,
       r.description AS r_description, r.name AS r_name, r.paused AS r_paused, r.is_shared AS r_is_shared,
       r.contacted_at AS r_contacted_at, r.created_at AS r_created_at,
       EXISTS (SELECT 1 FROM jobs rj WHERE rj.runner_id = j.runner_id AND rj.status = 'running') AS r_busy,
       {USER_COLUMNS.format(a="u", p="u_")},
       (SELECT json_group_array(json_array(a.file_type, a.size, a.filename, a.file_format, a.expire_at, a.locked))
          FROM job_artifacts a WHERE a.job_id = j.id) AS artifacts
  FROM jobs j
  JOIN pipelines p ON p.id = j.pipeline_id
  JOIN projects pr ON pr.id = j.project_id
  LEFT JOIN commits c ON c.project_id = p.project_id AND c.sha = p.sha
  LEFT JOIN runners r ON r.id = j.runner_id
  LEFT JOIN users u ON u.id = j.user_id"""

PIPELINE_SELECT = f"""
SELECT p.*, pr.path_with_namespace AS pr_path, {USER_COLUMNS.format(a="u", p="u_")}
  FROM pipelines p
  JOIN projects pr ON pr.id = p.project_id
  LEFT JOIN users u ON u.id = p.user_id"""

PROJECT_ACCESS = """
SELECT pr.*, COALESCE(m.access_level, 0) AS access_level
  FROM projects pr LEFT JOIN members m ON m.project_id = pr.id AND m.user_id = :user_id"""


def _status_arms(base: str, statuses: Sequence[str], params: dict[str, Any]) -> str:
    """One index search per status, merged in id order (no temporary B-tree)."""
    if not statuses:
        return base
    arms = []
    for index, status in enumerate(statuses):
        params[f"s{index}"] = status
        arms.append(f"{base} AND status = :s{index}")
    return " UNION ALL ".join(arms)


def project_job_ids_sql(statuses: Sequence[str], params: dict[str, Any], *, after: int | None) -> str:
    base = "SELECT id FROM jobs WHERE project_id = :project_id"
    if after is not None:
        params["after"] = after
        base += " AND id < :after"
    return _status_arms(base, statuses, params) + " ORDER BY id DESC LIMIT :limit OFFSET :offset"


def pipeline_job_ids_sql(statuses: Sequence[str], params: dict[str, Any], *, include_retried: bool) -> str:
    sql = "SELECT id FROM jobs WHERE pipeline_id = :pipeline_id"
    if not include_retried:
        sql += " AND retried = 0"
    if statuses:
        names = []
        for index, status in enumerate(statuses):
            params[f"s{index}"] = status
            names.append(f":s{index}")
        sql += f" AND status IN ({', '.join(names)})"
    return sql


def _id(row: Row) -> int:
    return int(row["id"])


class Repository(Statements):
    def __init__(self, db: Backend):
        super().__init__(db)
        self.db = db

    async def write(self, work: Callable[[Unit], Awaitable[T]]) -> T:
        """Run ``work`` in one write transaction; commit unless it raises (the backend's ``write``)."""

        async def run(tx: Tx) -> T:
            return await work(Unit(tx))

        return await self.db.write(run)

    # --- monitoring ------------------------------------------------------------

    async def ping(self) -> None:
        """One read of a table (not a bare ``SELECT 1``, which SQLite answers without its file)."""
        await self.db.fetchone("SELECT count(*) AS n FROM instance_settings")

    async def job_counts(self) -> dict[str, int]:
        """How many jobs have each status (statuses no job has are missing).

        Grouped by project too, in the order of the jobs_project_status index: one pass over the index
        with no sorting (about twice as fast as GROUP BY status, which sorts), summed here."""
        rows = await self.db.fetchall("SELECT status, count(*) AS n FROM jobs GROUP BY project_id, status")
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + int(row["n"])
        return counts

    async def stored_totals(self) -> dict[str, tuple[int, int]]:
        """Blobs the rows point at, as (count, bytes), for ``logs`` (archived job logs) and ``artifacts``."""
        rows = await self.db.fetchall(
            """SELECT CASE WHEN file_type = 'trace' THEN 'logs' ELSE 'artifacts' END AS kind,
                      count(*) AS n, COALESCE(sum(size), 0) AS bytes
                 FROM job_artifacts GROUP BY 1"""
        )
        return {row["kind"]: (int(row["n"]), int(row["bytes"])) for row in rows}

    # --- identity --------------------------------------------------------

    async def token_by_digest(self, digest: str) -> Row | None:
        return await self.db.fetchone(
            f"""SELECT t.id AS token_id, t.scopes, t.expires_at, t.revoked, u.admin, u.email,
                       {USER_COLUMNS.format(a="u", p="")}
                  FROM personal_access_tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.digest = ?""",
            (digest,),
        )

    async def job_by_token_digest(self, digest: str) -> Row | None:
        return await self.db.fetchone(
            f"""SELECT j.id AS job_id, j.status AS job_status, j.project_id AS job_project_id,
                       u.admin, u.email, {USER_COLUMNS.format(a="u", p="")}
                  FROM jobs j LEFT JOIN users u ON u.id = j.user_id
                 WHERE j.token_digest = ?""",
            (digest,),
        )

    async def user_by_id(self, user_id: int) -> Row | None:
        return await self.db.fetchone(
            f"SELECT u.admin, u.email, {USER_COLUMNS.format(a='u', p='')} FROM users u WHERE u.id = ?", (user_id,)
        )

    # --- projects ----------------------------------------------------------

    async def project_by_id(self, project_id: int, user_id: int | None) -> Row | None:
        return await self.db.fetchone(PROJECT_ACCESS + " WHERE pr.id = :id", {"id": project_id, "user_id": user_id})

    async def project_by_path(self, path: str, user_id: int | None) -> Row | None:
        return await self.db.fetchone(
            PROJECT_ACCESS + " WHERE pr.path_with_namespace = :path", {"path": path, "user_id": user_id}
        )

    async def protected_branches(self, project_id: int) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT name FROM protected_branches WHERE project_id = ? ORDER BY name", (project_id,)
        )
        return [row["name"] for row in rows]

    async def visible_projects(
        self,
        *,
        user_id: int | None,
        admin: bool,
        membership: bool,
        visibility: str | None,
        search: str | None,
        order_by: str,
        sort: str,
        limit: int,
        offset: int,
    ) -> Page:
        """A page of the projects a caller can see, and their number (capped above 10,000)."""
        where: list[str] = []
        params: dict[str, Any] = {"user_id": user_id}
        member_of = "SELECT project_id FROM members WHERE user_id = :user_id"
        if membership and user_id is not None:
            where.append(f"pr.id IN ({member_of})")
        elif user_id is None:
            where.append("pr.visibility = 'public'")
        elif not admin:
            # a UNION of two index searches, not an OR, which would scan every project
            where.append(
                f"pr.id IN (SELECT id FROM projects WHERE visibility IN ('public', 'internal') UNION {member_of})"
            )
        if visibility:
            where.append("pr.visibility = :visibility")
            params["visibility"] = visibility
        if search:
            where.append("(pr.name LIKE :search ESCAPE '\\' OR pr.path_with_namespace LIKE :search ESCAPE '\\')")
            params["search"] = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        # GitLab reorders created_at as id
        column = {"path": "path_with_namespace", "updated_at": "last_activity_at", "created_at": "id"}.get(
            order_by, order_by
        )
        direction = "ASC" if sort == "asc" else "DESC"
        order = f"pr.id {direction}" if column == "id" else f"pr.{column} {direction}, pr.id {direction}"
        rows = await self.db.fetchall(
            PROJECT_ACCESS + clause + f" ORDER BY {order} LIMIT :limit OFFSET :offset",
            {**params, "limit": limit, "offset": offset},
        )
        count = await self.db.fetchone(
            f"SELECT count(*) AS n FROM (SELECT 1 FROM projects pr{clause} LIMIT {MAX_COUNT_PLUS_ONE})", params
        )
        return Page(rows, total=count["n"] if count else 0)

    # --- jobs ------------------------------------------------------------------

    async def job(self, project_id: int, job_id: int) -> Row | None:
        return await self.db.fetchone(JOB_SELECT + " WHERE j.id = ? AND j.project_id = ?", (job_id, project_id))

    async def job_by_id(self, job_id: int) -> Row | None:
        return await self.db.fetchone(JOB_SELECT + " WHERE j.id = ?", (job_id,))

    async def jobs_by_ids(self, ids: Sequence[int]) -> list[Row]:
        """Jobs with all their columns, newest first (ids that name no job are left out)."""
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        return await self.db.fetchall(f"{JOB_SELECT} WHERE j.id IN ({marks}) ORDER BY j.id DESC", tuple(ids))

    async def project_jobs(
        self,
        project_id: int,
        statuses: Sequence[str],
        *,
        limit: int,
        offset: int = 0,
        after: int | None = None,
        ids_only: bool = False,
    ) -> Page:
        """Newest first; ``limit + 1`` rows are read to learn whether a next page exists. With ``ids_only``
        the rows hold only ``id`` (for a caller that keeps the jobs it built: jobs_by_ids for the others)."""
        params: dict[str, Any] = {"project_id": project_id, "limit": limit + 1, "offset": offset}
        ids = project_job_ids_sql(statuses, params, after=after)
        sql = ids if ids_only else f"{JOB_SELECT} WHERE j.id IN ({ids}) ORDER BY j.id DESC"
        rows = await self.db.fetchall(sql, params)
        return Page(rows[:limit], len(rows) > limit)

    async def pipeline_jobs(
        self,
        pipeline_id: int,
        statuses: Sequence[str],
        *,
        include_retried: bool,
        limit: int,
        offset: int,
        ids_only: bool = False,
    ) -> Page:
        """A page of a pipeline's jobs and their number (capped: above 10,000 it is 10,001); ``ids_only``
        as for project_jobs."""
        params: dict[str, Any] = {"pipeline_id": pipeline_id, "limit": limit + 1, "offset": offset}
        ids = pipeline_job_ids_sql(statuses, params, include_retried=include_retried)
        page_ids = f"{ids} ORDER BY id DESC LIMIT :limit OFFSET :offset"
        counted = f"SELECT count(*) FROM ({ids} LIMIT {MAX_COUNT_PLUS_ONE})"
        if ids_only:  # the ids and the count in one statement: a row for each id, and one with the count
            both = await self.db.fetchall(
                f"SELECT id, NULL AS n FROM ({page_ids}) UNION ALL SELECT NULL, ({counted})", params
            )
            ids_found: list[Row] = sorted((row for row in both if row["id"] is not None), key=_id, reverse=True)
            total = next(row["n"] for row in both if row["id"] is None)
            return Page(ids_found[:limit], len(ids_found) > limit, total)
        rows = await self.db.fetchall(f"{JOB_SELECT} WHERE j.id IN ({page_ids}) ORDER BY j.id DESC", params)
        count = await self.db.fetchone(f"SELECT ({counted}) AS n", params)
        return Page(rows[:limit], len(rows) > limit, count["n"] if count else 0)

    async def archive(self, job_id: int) -> Row | None:
        """A job's archive row, with its pipeline's artifacts_locked."""
        return await self.db.fetchone(
            """SELECT a.*, p.artifacts_locked FROM job_artifacts a JOIN jobs j ON j.id = a.job_id
                 JOIN pipelines p ON p.id = j.pipeline_id
                WHERE a.job_id = ? AND a.file_type = 'archive'""",
            (job_id,),
        )

    # --- pipelines ---------------------------------------------------------------

    async def pipeline(self, project_id: int, pipeline_id: int) -> Row | None:
        return await self.db.fetchone(
            PIPELINE_SELECT + " WHERE p.id = ? AND p.project_id = ?", (pipeline_id, project_id)
        )

    async def project_pipelines(
        self, project_id: int, filters: dict[str, Any], *, order_by: str, sort: str, limit: int, offset: int
    ) -> Page:
        where, params = ["p.project_id = :project_id"], {"project_id": project_id}
        scope = filters.get("scope")
        if scope == "running":
            where.append("p.status = 'running'")
        elif scope == "pending":
            where.append("p.status = 'pending'")
        elif scope == "finished":
            where.append("p.status IN ('success', 'failed', 'canceled', 'skipped')")
        elif scope == "branches":
            where.append("p.tag = 0")
        elif scope == "tags":
            where.append("p.tag = 1")
        if filters.get("source") != "parent_pipeline":
            where.append("p.parent_id IS NULL")  # child pipelines only when asked for by source
        for name in ("status", "ref", "sha", "source"):
            if filters.get(name) is not None:
                where.append(f"p.{name} = :{name}")
                params[name] = filters[name]
        if filters.get("username") is not None:
            where.append("p.user_id = (SELECT id FROM users WHERE username = :username)")
            params["username"] = filters["username"]
        clause = " WHERE " + " AND ".join(where)
        direction = "ASC" if sort == "asc" else "DESC"
        order = "p.id" if order_by == "id" else f"p.{order_by} {direction}, p.id"
        rows = await self.db.fetchall(
            f"{PIPELINE_SELECT}{clause} ORDER BY {order} {direction} LIMIT :limit OFFSET :offset",
            {**params, "limit": limit, "offset": offset},
        )
        count = await self.db.fetchone(
            f"SELECT count(*) AS n FROM (SELECT 1 FROM pipelines p{clause} LIMIT {MAX_COUNT_PLUS_ONE})", params
        )
        return Page(rows, total=count["n"] if count else 0)

    async def latest_jobs(self, pipeline_ids: Sequence[int]) -> list[Row]:
        """The latest (not retried) jobs of some pipelines, in id order, for their stage graphs on the pages."""
        if not pipeline_ids:
            return []
        marks = ", ".join("?" * len(pipeline_ids))
        return await self.db.fetchall(
            f"""SELECT id, pipeline_id, name, stage, stage_idx, status, allow_failure FROM jobs
                 WHERE pipeline_id IN ({marks}) AND retried = 0 ORDER BY pipeline_id, id""",
            tuple(pipeline_ids),
        )

    async def latest_successful_job_for_ref(self, project_id: int, ref: str, job_name: str) -> Row | None:
        """``Project#latest_successful_build_for_ref!``: the newest successful pipeline for the ref, then the
        latest job of that name with an archive in it or its child pipelines; no fall-back to older pipelines."""
        pipeline = await self.db.fetchone(
            """SELECT id FROM pipelines WHERE project_id = ? AND ref = ? AND status = 'success' AND parent_id IS NULL
                ORDER BY id DESC LIMIT 1""",
            (project_id, ref),
        )
        if pipeline is None:
            return None
        return await self.db.fetchone(
            f"""WITH RECURSIVE family(id) AS (
                    SELECT ? UNION ALL
                    SELECT p.id FROM pipelines p JOIN family f ON p.parent_id = f.id WHERE p.project_id = ?)
                {JOB_SELECT}
                 WHERE j.pipeline_id IN (SELECT id FROM family) AND j.name = ? AND j.retried = 0
                   AND EXISTS (SELECT 1 FROM job_artifacts a WHERE a.job_id = j.id AND a.file_type = 'archive')
                 ORDER BY j.id DESC LIMIT 1""",
            (pipeline["id"], project_id, job_name),
        )
