"""What POST /jobs/request answers: GitLab's job payload for a runner."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from jobsvc.domain.timefmt import parse, utcnow
from jobsvc.storage.repo import Repository
from jobsvc.storage.rows import Row

FAILURE_REASONS = [
    "unknown_failure", "script_failure", "api_failure", "stuck_or_timeout_failure", "runner_system_failure",
    "missing_dependency_failure", "runner_unsupported", "stale_schedule", "job_execution_timeout", "archived_failure",
    "unmet_prerequisites", "scheduler_failure", "data_integrity_failure", "forward_deployment_failure",
    "user_blocked", "ci_quota_exceeded", "no_matching_runner", "trace_size_exceeded", "builds_disabled",
    "environment_creation_failure", "deployment_rejected", "failed_outdated_deployment_job",
    "protected_environment_failure",
    "insufficient_bridge_permissions", "downstream_bridge_project_not_found", "invalid_bridge_trigger",
    "upstream_bridge_project_not_found", "insufficient_upstream_permissions", "bridge_pipeline_is_child_pipeline",
    "downstream_pipeline_creation_failed", "secrets_provider_not_found", "reached_max_descendant_pipelines_depth",
    "ip_restriction_failure", "reached_max_pipeline_hierarchy_size", "reached_downstream_pipeline_trigger_rate_limit",
]  # fmt: skip


def slug(text: str) -> str:
    """CI_COMMIT_REF_SLUG: lower-case, non-alphanumerics to '-', at most 63 characters, no '-' at the ends."""
    return re.sub(r"[^a-z0-9]", "-", text.lower())[:63].strip("-")


def _var(key: str, value: Any, *, public: bool = True, masked: bool = False) -> dict[str, Any]:
    return {"key": key, "value": "" if value is None else str(value), "public": public, "masked": masked}


def predefined_variables(job: Row, token: str, base: str) -> list[dict[str, Any]]:
    url = urlsplit(base)
    path, ref, sha = job["pr_path"], job["p_ref"], job["p_sha"]
    project_url = f"{base}/{path}"
    title = job["c_title"] or ""
    variables = [
        _var("CI", "true"), _var("GITLAB_CI", "true"),
        _var("CI_SERVER_URL", base), _var("CI_SERVER_HOST", url.hostname),
        _var("CI_SERVER_PORT", url.port or (443 if url.scheme == "https" else 80)),
        _var("CI_SERVER_PROTOCOL", url.scheme), _var("CI_SERVER_NAME", "GitLab"),
        _var("CI_API_V4_URL", f"{base}/api/v4"),
        _var("CI_JOB_ID", job["id"]), _var("CI_JOB_NAME", job["name"]), _var("CI_JOB_STAGE", job["stage"]),
        _var("CI_JOB_TOKEN", token, public=False, masked=True),
        _var("CI_JOB_URL", f"{project_url}/-/jobs/{job['id']}"),
        _var("CI_JOB_STARTED_AT", job["started_at"]),
        _var("CI_PIPELINE_ID", job["pipeline_id"]), _var("CI_PIPELINE_IID", job["p_iid"]),
        _var("CI_PIPELINE_SOURCE", job["p_source"]), _var("CI_PIPELINE_CREATED_AT", job["p_created_at"]),
        _var("CI_PIPELINE_URL", f"{project_url}/-/pipelines/{job['pipeline_id']}"),
        _var("CI_PROJECT_ID", job["project_id"]), _var("CI_PROJECT_NAME", path.rsplit("/", 1)[1]),
        _var("CI_PROJECT_TITLE", job["pr_name"]), _var("CI_PROJECT_PATH", path),
        _var("CI_PROJECT_PATH_SLUG", slug(path)), _var("CI_PROJECT_NAMESPACE", path.rsplit("/", 1)[0]),
        _var("CI_PROJECT_ROOT_NAMESPACE", path.split("/", 1)[0]),
        _var("CI_PROJECT_URL", project_url), _var("CI_PROJECT_VISIBILITY", job["pr_visibility"]),
        _var("CI_DEFAULT_BRANCH", job["pr_default_branch"]),
        _var("CI_REPOSITORY_URL", f"{url.scheme}://gitlab-ci-token:{token}@{url.netloc}/{path}.git", public=False,
             masked=False),
        _var("CI_COMMIT_SHA", sha), _var("CI_COMMIT_SHORT_SHA", sha[:8]),
        _var("CI_COMMIT_BEFORE_SHA", job["p_before_sha"]),
        _var("CI_COMMIT_REF_NAME", ref), _var("CI_COMMIT_REF_SLUG", slug(ref)),
        _var("CI_COMMIT_REF_PROTECTED", "true" if job["protected"] else "false"),
        _var("CI_COMMIT_TITLE", title), _var("CI_COMMIT_MESSAGE", job["c_message"] or title),
        _var("CI_COMMIT_TAG" if job["p_tag"] else "CI_COMMIT_BRANCH", ref),
        _var("CI_NODE_TOTAL", 1),
        _var("CI_RUNNER_ID", job["runner_id"]), _var("CI_RUNNER_DESCRIPTION", job["r_description"]),
        _var("CI_RUNNER_TAGS", json.dumps(json.loads(job["r_tags"] or "[]"))),
    ]  # fmt: skip
    if job["user_id"] is not None:
        variables += [
            _var("GITLAB_USER_ID", job["user_id"]), _var("GITLAB_USER_LOGIN", job["u_username"]),
            _var("GITLAB_USER_NAME", job["u_name"]), _var("GITLAB_USER_EMAIL", job["u_email"]),
        ]  # fmt: skip
    return variables


def _steps(job: Row) -> list[dict[str, Any]]:
    steps = [{
        "name": "script",
        "script": json.loads(job["before_script"]) + json.loads(job["script"]),
        "timeout": job["timeout"],
        "when": "on_success",
        "allow_failure": False,
    }]  # fmt: skip
    after = json.loads(job["after_script"])
    if after:
        steps.append({"name": "after_script", "script": after, "timeout": job["timeout"], "when": "always",
                      "allow_failure": True})  # fmt: skip
    return steps


def _artifacts(job: Row) -> list[dict[str, Any]]:
    if not job["artifacts_spec"]:
        return []
    spec = json.loads(job["artifacts_spec"])
    return [{
        "name": spec.get("name") or "", "untracked": False, "paths": spec.get("paths", []),
        "when": spec.get("when", "on_success"), "expire_in": spec.get("expire_in"),
        "artifact_type": "archive", "artifact_format": "zip",
    }]  # fmt: skip


async def build(repo: Repository, job_id: int, token: str, base: str) -> dict[str, Any]:
    job = await repo.jobs.for_payload(job_id)
    assert job is not None
    now = utcnow()
    needs = json.loads(job["needs"]) if job["needs"] is not None else None
    dependencies = []
    for dep in await repo.jobs.dependencies(job["pipeline_id"], job["stage_idx"]):
        if needs is not None and dep["name"] not in needs:
            continue
        if dep["expire_at"] is not None and parse(dep["expire_at"]) < now:
            continue
        dependencies.append({"id": dep["id"], "name": dep["name"], "token": token,
                             "artifacts_file": {"filename": dep["filename"], "size": dep["size"]}})  # fmt: skip
    own = [_var(k, v, public=False) for k, v in json.loads(job["variables"]).items()]
    played = [_var(v["key"], v["value"], public=False) for v in json.loads(job["job_variables"])]
    url = urlsplit(base)
    queued = job["queued_at"]
    return {
        "id": job["id"],
        "token": token,
        "allow_git_fetch": True,
        "job_info": {
            "id": job["id"], "name": job["name"], "stage": job["stage"], "pipeline_id": job["pipeline_id"],
            "project_id": job["project_id"], "project_name": job["pr_name"], "project_full_path": job["pr_path"],
            "namespace_id": None, "root_namespace_id": None, "organization_id": None, "user_id": job["user_id"],
            "time_in_queue_seconds": int((now - parse(queued)).total_seconds()) if queued else 0,
        },
        "git_info": {
            "repo_url": f"{url.scheme}://gitlab-ci-token:{token}@{url.netloc}/{job['pr_path']}.git",
            "ref": job["p_ref"], "sha": job["p_sha"], "before_sha": job["p_before_sha"],
            "ref_type": "tag" if job["p_tag"] else "branch",
            "refspecs": [f"+refs/{'tags' if job['p_tag'] else 'heads'}/{job['p_ref']}:refs/"
                         f"{'tags' if job['p_tag'] else 'remotes/origin'}/{job['p_ref']}"],
            "depth": 20, "repo_object_format": "sha1", "protected": bool(job["protected"]),
        },
        "runner_info": {"timeout": job["timeout"], "runner_session_url": None},
        "variables": predefined_variables(job, token, base) + own + played,
        "steps": _steps(job),
        "hooks": [],
        "image": None,
        "services": [],
        "artifacts": _artifacts(job),
        "cache": [],
        "credentials": [],
        "features": {"trace_sections": True, "failure_reasons": FAILURE_REASONS},
        "dependencies": dependencies,
    }  # fmt: skip
