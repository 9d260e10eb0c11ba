"""Creating a pipeline from the project's CI definition (``POST /projects/:id/pipeline``).

The definition is parsed whole before anything is written (jobsvc.domain.ciconfig refuses
keys it does not understand), then the pipeline and all its jobs are inserted and
processed in one transaction, so the first stage is pending when it commits.
"""

from __future__ import annotations

import hashlib
import json

from jobsvc.domain.ciconfig import CiConfigError, PipelineDefinition, parse_ci_config
from jobsvc.domain.timefmt import now_iso
from jobsvc.services import processing
from jobsvc.storage.repo import Repository
from jobsvc.storage.rows import Row
from jobsvc.storage.unit import Unit


class PipelineRefused(Exception):
    """GitLab's 400 ``{"message": {"base": [reason]}}``."""


async def known_ref(repo: Repository, project: Row, ref: str) -> bool:
    """jobsvc has no repository: a ref exists when it is the default branch, protected, or has pipelines."""
    return ref == project["default_branch"] or await repo.pipelines.ref_known(project["id"], ref)


def definition(project: Row, ref: str, variables: dict[str, str]) -> PipelineDefinition:
    if not project["ci_config"]:
        raise PipelineRefused("Missing CI config file")
    try:
        return parse_ci_config(project["ci_config"], ref=ref, variables=variables)
    except CiConfigError as exc:
        raise PipelineRefused(exc.message) from None


async def create(repo: Repository, project: Row, pipeline: PipelineDefinition, user_id: int) -> int:
    async def work(unit: Unit) -> int:
        now = now_iso()
        last = await unit.pipelines.latest_for_ref(project["id"], pipeline.ref)
        sha = (
            last["sha"]
            if last
            else hashlib.sha1(f"{project['path_with_namespace']}:{pipeline.ref}".encode()).hexdigest()
        )  # noqa: S324
        iid = await unit.pipelines.next_iid(project["id"])
        tag = last["tag"] if last else 0
        pipeline_id = await unit.pipelines.create(iid, project["id"], pipeline.ref, sha, tag, user_id, now)
        await unit.pipelines.add_api_commit(project["id"], sha, now.replace("Z", "+00:00"))
        for job in pipeline.jobs:
            artifacts = job.artifacts
            await unit.pipelines.add_job(
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
        await processing.process_pipeline(unit, pipeline_id)
        return pipeline_id

    return await repo.write(work)
