"""GitLab's JSON entities, built directly from database rows (no marshmallow dump on the hot path).

Key order follows GitLab's ``expose`` order. Timestamps are already stored in
GitLab's format, so rows pass them through untouched; durations are computed
at read time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from jobsvc.domain.timefmt import format_utc, parse, seconds_between
from jobsvc.storage.rows import Row

ONLINE_WINDOW = timedelta(hours=2)
FOREVER = datetime.max.replace(tzinfo=UTC)


def user(row: Row, base: str, prefix: str = "u_") -> dict[str, Any] | None:
    """API::Entities::User as embedded in jobs and pipelines."""
    user_id = row[prefix + "id"]
    if user_id is None:
        return None
    username = row[prefix + "username"]
    return {
        "id": user_id,
        "username": username,
        "public_email": row[prefix + "public_email"],
        "name": row[prefix + "name"],
        "state": row[prefix + "state"],
        "locked": False,
        "avatar_url": row[prefix + "avatar_url"],
        "web_url": f"{base}/{username}",
        "created_at": row[prefix + "created_at"],
        "bio": row[prefix + "bio"],
        "location": row[prefix + "location"],
        "linkedin": row[prefix + "linkedin"],
        "twitter": row[prefix + "twitter"],
        "discord": "",
        "website_url": row[prefix + "website_url"],
        "github": "",
        "organization": row[prefix + "organization"],
        "job_title": row[prefix + "job_title"],
        "pronouns": None,
        "bot": bool(row[prefix + "bot"]),
        "work_information": None,
        "followers": 0,
        "following": 0,
        "local_time": None,
    }


def _commit(row: Row, base: str, path: str) -> dict[str, Any] | None:
    sha = row["p_sha"]
    if row["c_title"] is None:
        return None
    return {
        "id": sha,
        "short_id": sha[:8],
        "created_at": row["c_created_at"],
        "parent_ids": json.loads(row["c_parent_ids"]),
        "title": row["c_title"],
        "message": row["c_message"],
        "author_name": row["c_author_name"],
        "author_email": row["c_author_email"],
        "authored_date": row["c_authored_date"],
        "committer_name": row["c_committer_name"],
        "committer_email": row["c_committer_email"],
        "committed_date": row["c_committed_date"],
        "trailers": {},
        "extended_trailers": {},
        "web_url": f"{base}/{path}/-/commit/{sha}",
    }


def _runner(row: Row, now: datetime) -> dict[str, Any] | None:
    if row["runner_id"] is None or row["r_description"] is None:
        return None
    contacted = row["r_contacted_at"]
    online = contacted is not None and now - parse(contacted) < ONLINE_WINDOW
    paused = bool(row["r_paused"])
    return {
        "id": row["runner_id"],
        "description": row["r_description"],
        "ip_address": None,
        "active": not paused,
        "paused": paused,
        "is_shared": bool(row["r_is_shared"]),
        "runner_type": "instance_type" if row["r_is_shared"] else "project_type",
        "name": row["r_name"],
        "online": online,
        "created_at": row["r_created_at"],
        "status": "online" if online else ("never_contacted" if contacted is None else "offline"),
        # GitLab's RunnerJobExecutionStatusHelper: active while the runner has a running job
        "job_execution_status": "active" if row["r_busy"] else "idle",
    }


def _artifacts(row: Row, now_text: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """``artifacts[]`` and ``artifacts_file`` (only while an unexpired archive exists)."""
    listed: list[dict[str, Any]] = []
    archive: dict[str, Any] | None = None
    if row["artifacts"] in (None, "[]"):
        return listed, archive
    for file_type, size, filename, file_format, expire_at, _locked in json.loads(row["artifacts"]):
        listed.append({"file_type": file_type, "size": size, "filename": filename, "file_format": file_format})
        if file_type == "archive" and (expire_at is None or expire_at > now_text):
            archive = {"filename": filename, "size": size}
    return listed, archive


def pipeline_basic(row: Row, base: str, prefix: str = "p_") -> dict[str, Any]:
    """API::Entities::Ci::PipelineBasic, from a job row (``p_`` columns) or a pipeline row."""
    project_id = row["project_id"]
    pipeline_id = row["pipeline_id"] if prefix else row["id"]
    return {
        "id": pipeline_id,
        "iid": row[prefix + "iid"],
        "project_id": project_id,
        "sha": row[prefix + "sha"],
        "ref": row[prefix + "ref"],
        "status": row[prefix + "status"],
        "source": row[prefix + "source"],
        "created_at": row[prefix + "created_at"],
        "updated_at": row[prefix + "updated_at"],
        "web_url": f"{base}/{row['pr_path']}/-/pipelines/{pipeline_id}",
    }


class JobPresenter:
    """Builds the job entities of one response (API::Entities::Ci::Job).

    The users, commits, pipelines and runners that several jobs of a page share
    are built once and reused: on a 20-job page most jobs share them.
    """

    def __init__(self, base: str, now: datetime):
        self.base, self.now, self.now_text = base, now, format_utc(now)
        self._shared: dict[tuple[str, Any], Any] = {}

    def _once(self, kind: str, key: Any, build: Any) -> Any:
        if (kind, key) not in self._shared:
            self._shared[kind, key] = build()
        return self._shared[kind, key]

    def __call__(self, row: Row) -> dict[str, Any]:
        base, path = self.base, row["pr_path"]
        artifacts, archive = _artifacts(row, self.now_text)
        entity: dict[str, Any] = {
            "id": row["id"],
            "status": row["status"],
            "stage": row["stage"],
            "name": row["name"],
            "ref": row["p_ref"],
            "tag": bool(row["p_tag"]),
            "coverage": row["coverage"],
            "allow_failure": bool(row["allow_failure"]),
            "created_at": row["created_at"],
            "started_at": row["started_at"],
            "finished_at": row["finished_at"],
            "erased_at": row["erased_at"],
            "duration": seconds_between(row["started_at"], row["finished_at"], self.now),
            "queued_duration": seconds_between(row["queued_at"], row["started_at"], self.now),
            "user": self._once("user", row["user_id"], lambda: user(row, base)),
            "commit": self._once("commit", (row["project_id"], row["p_sha"]), lambda: _commit(row, base, path)),
            "pipeline": self._once("pipeline", row["pipeline_id"], lambda: pipeline_basic(row, base)),
        }
        if row["status"] == "failed":
            entity["failure_reason"] = row["failure_reason"] or "unknown_failure"
        entity["web_url"] = f"{base}/{path}/-/jobs/{row['id']}"
        entity["project"] = {"ci_job_token_scope_enabled": bool(row["pr_token_scope"])}
        entity["source"] = row["p_source"]
        if archive is not None:
            entity["artifacts_file"] = archive
        entity["artifacts"] = artifacts
        entity["runner"] = self._once("runner", row["runner_id"], lambda: _runner(row, self.now))
        entity["runner_manager"] = None
        entity["artifacts_expire_at"] = row["artifacts_expire_at"]
        entity["archived"] = False
        entity["tag_list"] = sorted(json.loads(row["tags"]))
        return entity


def counts_time(row: Row) -> bool:
    """Whether the job's ``duration`` or ``queued_duration`` grows with the clock (it waits or runs:
    ``seconds_between(start, None, now)``)."""
    started = row["started_at"]
    return (started is not None and row["finished_at"] is None) or (started is None and row["queued_at"] is not None)


def stable_until(row: Row, now: datetime, now_text: str) -> datetime | None:
    """Until when the job entity of ``row`` stays the same as at ``now`` (``format_utc(now)``) while the
    row does, but for its durations (``counts_time``); None when that cannot be told.

    The clock shows in two more places: the runner going offline two hours after its last contact, and
    the archive expiring (a second early here, as the row's time and the clock are compared as text)."""
    until = FOREVER
    contacted = row["r_contacted_at"]
    try:
        if row["runner_id"] is not None and row["r_description"] is not None and contacted is not None:
            offline = parse(contacted) + ONLINE_WINDOW
            if now < offline:
                until = offline
        if row["artifacts"] not in (None, "[]"):
            for file_type, _size, _name, _format, expire_at, _locked in json.loads(row["artifacts"]):
                if file_type == "archive" and expire_at is not None and expire_at > now_text:
                    until = min(until, parse(expire_at) - timedelta(seconds=1))
    except ValueError:  # a time that is not ISO 8601: leave it to the clock
        return None
    return until if until > now else None


def job(row: Row, base: str, now: datetime) -> dict[str, Any]:
    """One job entity."""
    return JobPresenter(base, now)(row)


_STATUS_TEXT = {
    "success": "passed",
    "failed": "failed",
    "running": "running",
    "pending": "pending",
    "canceled": "canceled",
    "canceling": "canceling",
    "skipped": "skipped",
    "manual": "manual",
    "created": "created",
    "scheduled": "scheduled",
    "preparing": "preparing",
    "waiting_for_resource": "waiting",
    "waiting_for_callback": "waiting",
}


def detailed_status(status: str, details_path: str) -> dict[str, Any]:
    text = _STATUS_TEXT.get(status, status)
    return {
        "icon": f"status_{status}",
        "text": text.capitalize(),
        "label": text,
        "group": status,
        "tooltip": text,
        "has_details": True,
        "details_path": details_path,
        "illustration": None,
        "favicon": f"/assets/ci_favicons/favicon_status_{status}.png",
    }


def pipeline(row: Row, base: str, now: datetime) -> dict[str, Any]:
    """API::Entities::Ci::Pipeline (a pipeline row with ``pr_path`` and ``u_`` columns)."""
    entity = pipeline_basic(row, base, prefix="")
    started, finished = row["started_at"], row["finished_at"]
    duration = seconds_between(started, finished, now) if finished else None
    entity.update(
        {
            "before_sha": row["before_sha"],
            "tag": bool(row["tag"]),
            "yaml_errors": None,
            "user": user(row, base),
            "started_at": started,
            "finished_at": finished,
            "committed_at": None,
            "duration": int(duration) if duration is not None else None,
            "queued_duration": None,
            "coverage": f"{row['coverage']:.2f}" if row["coverage"] is not None else None,
            "detailed_status": detailed_status(row["status"], f"/{row['pr_path']}/-/pipelines/{row['id']}"),
            "archived": False,
        }
    )
    return entity


def _namespace(path: str, base: str) -> dict[str, Any]:
    full = path.rsplit("/", 1)[0]
    parent = full.rsplit("/", 1)[0] if "/" in full else None
    return {
        # Namespaces are implied by project paths; their ids are derived from the path.
        "id": _stable_id(full),
        "name": full.rsplit("/", 1)[-1],
        "path": full.rsplit("/", 1)[-1],
        "kind": "group",
        "full_path": full,
        "parent_id": _stable_id(parent) if parent else None,
        "avatar_url": None,
        "web_url": f"{base}/groups/{full}",
    }


def _stable_id(text: str) -> int:
    import zlib

    return zlib.crc32(text.lower().encode()) & 0x7FFFFFFF or 1


def project(row: Row, base: str, access_level: int | None = None, simple: bool = False) -> dict[str, Any]:
    """API::Entities::Project (BasicProjectDetails fields first)."""
    path = row["path_with_namespace"]
    namespace = _namespace(path, base)
    host = base.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    entity: dict[str, Any] = {
        "id": row["id"],
        "description": row["description"],
        "name": row["name"],
        "name_with_namespace": " / ".join(path.split("/")[:-1] + [row["name"]]),
        "path": path.rsplit("/", 1)[1],
        "path_with_namespace": path,
        "created_at": row["created_at"],
        "default_branch": row["default_branch"],
        "tag_list": [],
        "topics": [],
        "ssh_url_to_repo": f"git@{host}:{path}.git",
        "http_url_to_repo": f"{base}/{path}.git",
        "web_url": f"{base}/{path}",
        "readme_url": None,
        "forks_count": 0,
        "avatar_url": None,
        "star_count": 0,
        "last_activity_at": row["last_activity_at"],
        "visibility": row["visibility"],
        "namespace": namespace,
    }
    if simple:
        return entity
    api = f"{base}/api/v4/projects/{row['id']}"
    entity.update(
        {
            "_links": {
                "self": api,
                "issues": f"{api}/issues",
                "merge_requests": f"{api}/merge_requests",
                "repo_branches": f"{api}/repository/branches",
                "labels": f"{api}/labels",
                "events": f"{api}/events",
                "members": f"{api}/members",
                "cluster_agents": f"{api}/cluster_agents",
            },
            "empty_repo": False,
            "archived": False,
            "resolve_outdated_diff_discussions": False,
            "jobs_enabled": True,
            "builds_access_level": "enabled",
            "public_jobs": bool(row["public_builds"]),
            "shared_runners_enabled": True,
            "ci_job_token_scope_enabled": bool(row["ci_job_token_scope_enabled"]),
            "ci_config_path": None,
            "permissions": {
                "project_access": {"access_level": access_level, "notification_level": 3} if access_level else None,
                "group_access": None,
            },
        }
    )
    return entity


def current_user(row: Row, base: str, now: datetime) -> dict[str, Any]:
    """``GET /user``: API::Entities::UserPublic, plus ``is_admin`` for an admin."""
    entity = user(row, base, prefix="")
    assert entity is not None
    entity.update(
        {
            "last_sign_in_at": None,
            "confirmed_at": row["created_at"],
            "last_activity_on": now.date().isoformat(),
            "email": row["email"],
            "theme_id": 1,
            "color_scheme_id": 1,
            "projects_limit": 100000,
            "current_sign_in_at": None,
            "identities": [],
            "can_create_group": True,
            "can_create_project": True,
            "two_factor_enabled": False,
            "external": False,
            "private_profile": False,
            "commit_email": row["email"],
        }
    )
    if row["admin"]:
        entity["is_admin"] = True
    return entity
