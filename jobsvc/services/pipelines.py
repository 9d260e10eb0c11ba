"""Creating a pipeline from the project's CI definition (``POST /projects/:id/pipeline``).

The definition is parsed whole before anything is written (jobsvc.domain.ciconfig refuses
keys it does not understand), then the pipeline and all its jobs are inserted and
processed in one transaction, so the first stage is pending when it commits.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3

from jobsvc.domain.ciconfig import CiConfigError, PipelineDefinition, parse_ci_config
from jobsvc.domain.timefmt import now_iso
from jobsvc.services import processing
from jobsvc.storage.db import Database, Tx


class PipelineRefused(Exception):
    """GitLab's 400 ``{"message": {"base": [reason]}}``."""


async def known_ref(db: Database, project: sqlite3.Row, ref: str) -> bool:
    """jobsvc has no repository: a ref exists when it is the default branch, protected, or has pipelines."""
    if ref == project["default_branch"]:
        return True
    row = await db.fetchone(
        """SELECT EXISTS (SELECT 1 FROM pipelines WHERE project_id = :p AND ref = :r)
               OR EXISTS (SELECT 1 FROM protected_branches WHERE project_id = :p AND name = :r)""",
        {"p": project["id"], "r": ref},
    )
    return bool(row and row[0])


def definition(project: sqlite3.Row, ref: str, variables: dict[str, str]) -> PipelineDefinition:
    if not project["ci_config"]:
        raise PipelineRefused("Missing CI config file")
    try:
        return parse_ci_config(project["ci_config"], ref=ref, variables=variables)
    except CiConfigError as exc:
        raise PipelineRefused(exc.message) from None


async def create(db: Database, project: sqlite3.Row, pipeline: PipelineDefinition, user_id: int) -> int:
    async def work(tx: Tx) -> int:
        now = now_iso()
        last = await tx.fetchone(
            "SELECT sha, tag FROM pipelines WHERE project_id = ? AND ref = ? ORDER BY id DESC LIMIT 1",
            (project["id"], pipeline.ref),
        )
        sha = (
            last["sha"]
            if last
            else hashlib.sha1(f"{project['path_with_namespace']}:{pipeline.ref}".encode()).hexdigest()
        )  # noqa: S324
        iid = await tx.fetchone(
            "SELECT COALESCE(MAX(iid), 0) + 1 FROM pipelines WHERE project_id = ?", (project["id"],)
        )
        assert iid is not None  # an aggregate always has its one row
        pipeline_id = await tx.insert(
            """INSERT INTO pipelines (iid, project_id, ref, sha, tag, source, status, user_id, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, 'api', 'created', ?, ?, ?)""",
            (iid[0], project["id"], pipeline.ref, sha, last["tag"] if last else 0, user_id, now, now),
        )
        await tx.execute(
            """INSERT OR IGNORE INTO commits (project_id, sha, title, message, author_name, author_email,
                   authored_date, committer_name, committer_email, committed_date, created_at)
               VALUES (?, ?, 'Pipeline created over the API', 'Pipeline created over the API', 'jobsvc',
                       'jobsvc@localhost', ?, 'jobsvc', 'jobsvc@localhost', ?, ?)""",
            (project["id"], sha, now.replace("Z", "+00:00"), now.replace("Z", "+00:00"), now.replace("Z", "+00:00")),
        )
        for job in pipeline.jobs:
            artifacts = job.artifacts
            await tx.insert(
                """INSERT INTO jobs (project_id, pipeline_id, name, stage, stage_idx, status, "when", allow_failure,
                       user_id, before_script, script, after_script, variables, tags, needs, artifacts_spec,
                       start_in, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, 'created', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    project["id"], pipeline_id, job.name, job.stage, job.stage_idx, job.when, int(job.allow_failure),
                    user_id, json.dumps(job.before_script), json.dumps(job.script), json.dumps(job.after_script),
                    json.dumps({**job.variables, **pipeline.variables}), json.dumps(sorted(set(job.tags))),
                    json.dumps(list(job.needs)) if job.needs is not None else None,
                    json.dumps({"paths": list(artifacts.paths), "expire_in": artifacts.expire_in,
                                "when": artifacts.when}) if artifacts else None,
                    job.start_in, now, now,
                ),
            )  # fmt: skip
        await processing.process_pipeline(tx, pipeline_id)
        return pipeline_id

    return await db.write(work)
