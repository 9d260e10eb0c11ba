"""The runner side of GitLab: registration, and handing pending jobs to runners.

A job is handed out inside one unit of work with a guarded
``UPDATE ... WHERE status = 'pending'``, so two runners never get the same job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from jobsvc.domain import tokens
from jobsvc.domain.timefmt import now_iso, parse, utcnow
from jobsvc.services import processing
from jobsvc.storage.repo import Repository
from jobsvc.storage.rows import Row
from jobsvc.storage.unit import Unit

MAX_TAGS = 50
CONTACT_EVERY_SECONDS = 60


class RegistrationError(Exception):
    """The registration could not be accepted; ``body`` is GitLab's answer."""

    def __init__(self, body: dict[str, Any]):
        super().__init__(body)
        self.body = body


def new_runner_token() -> str:
    return "glrt-" + secrets.token_urlsafe(20)


def new_job_token() -> str:
    return "glcbt-" + secrets.token_urlsafe(20)


def registration_token_ok(given: str, configured: str) -> bool:
    """Compare digests in constant time; an empty configured token turns registration off."""
    if not configured:
        return False
    return hmac.compare_digest(
        hashlib.sha256(tokens.token_bytes(given)).digest(), hashlib.sha256(tokens.token_bytes(configured)).digest()
    )


def tag_list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, list) else [value]
    return sorted({str(item).strip() for item in items if str(item).strip()})


async def register(repo: Repository, params: dict[str, Any]) -> tuple[int, str]:
    tags = tag_list(params.get("tag_list"))
    if len(tags) > MAX_TAGS:
        raise RegistrationError(
            {"message": {"tags_list": [f"Too many tags specified. Please limit the number of tags to {MAX_TAGS}"]}}
        )
    paused = _flag(params.get("paused"), False) or not _flag(params.get("active"), True)
    token = new_runner_token()
    info: dict[str, Any] = params["info"] if isinstance(params.get("info"), dict) else {}

    async def work(unit: Unit) -> int:
        return await unit.runners.add(
            (
                str(params.get("description") or ""),
                info.get("name"),
                tokens.digest(token),
                json.dumps(tags),
                int(_flag(params.get("run_untagged"), True)),
                int(paused),
                int(_flag(params.get("locked"), False)),
                params.get("access_level") or "not_protected",
                _int(params.get("maximum_timeout")),
                json.dumps(info),
                now_iso(),
            ),
        )

    return await repo.write(work), token


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "t", "yes", "y", "on")


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


async def by_token(repo: Repository, token: str) -> Row | None:
    return await repo.runners.by_token_digest(tokens.digest(token))


async def delete(repo: Repository, runner_id: int) -> None:
    async def work(unit: Unit) -> None:
        await unit.runners.delete(runner_id)

    await repo.write(work)


async def touch(repo: Repository, runner: Row, info: Any) -> None:
    """Record contact, at most once a minute per runner (every poll would be a write)."""
    contacted = runner["contacted_at"]
    if contacted is not None and (utcnow() - parse(contacted)).total_seconds() < CONTACT_EVERY_SECONDS:
        return
    info_json = json.dumps(info) if isinstance(info, dict) else runner["info"]

    async def work(unit: Unit) -> None:
        await unit.runners.contacted(runner["id"], now_iso(), info_json)

    await repo.write(work)


async def queue_version(repo: Repository) -> str:
    """A value that changes whenever the set of pending jobs does (X-GitLab-Last-Update)."""
    row = await repo.jobs.pending_summary()
    count, newest, updated = (row["n"], row["newest"], row["updated"]) if row else (0, None, None)
    return hashlib.sha1(f"{count}:{newest}:{updated}".encode()).hexdigest()[:16]  # noqa: S324 - not a secret


def runner_can_take(runner: Row, job_tags: list[str], protected: bool) -> bool:
    """Tags must be a subset of the runner's; untagged jobs need run_untagged; ref_protected runners
    take only jobs on protected refs (GitLab's Ci::Runner matching)."""
    runner_tags = set(json.loads(runner["tags"]))
    if job_tags and not set(job_tags) <= runner_tags:
        return False
    if not job_tags and not runner["run_untagged"]:
        return False
    return not (runner["access_level"] == "ref_protected" and not protected)


@dataclass(frozen=True)
class Assignment:
    job_id: int
    token: str


async def assign_job(repo: Repository, runner: Row) -> Assignment | None:
    """Move the oldest pending job this runner may take to ``running``; None when there is none."""

    async def work(unit: Unit) -> Assignment | None:
        after = 0
        while True:
            rows = await unit.jobs.pending_candidates(runner["id"], shared=bool(runner["is_shared"]), after=after)
            if not rows:
                return None
            for row in rows:
                if runner_can_take(runner, json.loads(row["tags"]), bool(row["protected"])):
                    token = new_job_token()
                    claim = {"runner_id": runner["id"], "token_digest": tokens.digest(token)}
                    taken = await unit.jobs.set_status(
                        row["id"], "pending", "running", now_iso(), claim, fill=("queued_at",)
                    )
                    if taken:
                        await processing.after_job_change(unit, row["id"])
                        return Assignment(row["id"], token)
            after = rows[-1]["id"]

    return await repo.write(work)
