"""The runner side of GitLab: registration, and handing pending jobs to runners.

A job is handed out inside one BEGIN IMMEDIATE transaction with a guarded
``UPDATE ... WHERE status = 'pending'``, so two runners never get the same job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any

from jobsvc.domain import tokens
from jobsvc.domain.timefmt import now_iso, parse, utcnow
from jobsvc.services import processing
from jobsvc.storage.db import Database, Tx

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


async def register(db: Database, params: dict[str, Any]) -> tuple[int, str]:
    tags = tag_list(params.get("tag_list"))
    if len(tags) > MAX_TAGS:
        raise RegistrationError(
            {"message": {"tags_list": [f"Too many tags specified. Please limit the number of tags to {MAX_TAGS}"]}}
        )
    paused = _flag(params.get("paused"), False) or not _flag(params.get("active"), True)
    token = new_runner_token()
    info: dict[str, Any] = params["info"] if isinstance(params.get("info"), dict) else {}

    async def work(tx: Tx) -> int:
        return await tx.insert(
            """INSERT INTO runners (description, name, token_digest, tags, run_untagged, paused, is_shared, locked,
                   access_level, maximum_timeout, info, created_at)
               VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)""",
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

    return await db.write(work), token


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


async def by_token(db: Database, token: str) -> sqlite3.Row | None:
    return await db.fetchone("SELECT * FROM runners WHERE token_digest = ?", (tokens.digest(token),))


async def delete(db: Database, runner_id: int) -> None:
    async def work(tx: Tx) -> None:
        await tx.execute("DELETE FROM runners WHERE id = ?", (runner_id,))

    await db.write(work)


async def touch(db: Database, runner: sqlite3.Row, info: Any) -> None:
    """Record contact, at most once a minute per runner (every poll would be a write)."""
    contacted = runner["contacted_at"]
    if contacted is not None and (utcnow() - parse(contacted)).total_seconds() < CONTACT_EVERY_SECONDS:
        return
    info_json = json.dumps(info) if isinstance(info, dict) else runner["info"]

    async def work(tx: Tx) -> None:
        await tx.execute(
            "UPDATE runners SET contacted_at = ?, info = ? WHERE id = ?", (now_iso(), info_json, runner["id"])
        )

    await db.write(work)


async def queue_version(db: Database) -> str:
    """A value that changes whenever the set of pending jobs does (X-GitLab-Last-Update)."""
    row = await db.fetchone("SELECT count(*), max(id), max(updated_at) FROM jobs WHERE status = 'pending'")
    count, newest, updated = row if row else (0, None, None)
    return hashlib.sha1(f"{count}:{newest}:{updated}".encode()).hexdigest()[:16]  # noqa: S324 - not a secret


_CANDIDATES = """
SELECT j.id, j.tags, j.project_id,
       EXISTS (SELECT 1 FROM protected_branches pb WHERE pb.project_id = j.project_id AND pb.name = p.ref) AS protected
  FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id
 WHERE j.status = 'pending' AND j.id > :after {projects}
 ORDER BY j.id LIMIT 200"""


def runner_can_take(runner: sqlite3.Row, job_tags: list[str], protected: bool) -> bool:
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


async def assign_job(db: Database, runner: sqlite3.Row) -> Assignment | None:
    """Move the oldest pending job this runner may take to ``running``; None when there is none."""
    projects = (
        ""
        if runner["is_shared"]
        else "AND j.project_id IN (SELECT project_id FROM runner_projects WHERE runner_id = :runner)"
    )

    async def work(tx: Tx) -> Assignment | None:
        after = 0
        while True:
            rows = await tx.fetchall(_CANDIDATES.format(projects=projects), {"after": after, "runner": runner["id"]})
            if not rows:
                return None
            for row in rows:
                if runner_can_take(runner, json.loads(row["tags"]), bool(row["protected"])):
                    token = new_job_token()
                    now = now_iso()
                    changed = await tx.execute(
                        """UPDATE jobs SET status = 'running', runner_id = ?, started_at = ?, updated_at = ?,
                               token_digest = ?, queued_at = COALESCE(queued_at, ?)
                            WHERE id = ? AND status = 'pending'""",
                        (runner["id"], now, now, tokens.digest(token), now, row["id"]),
                    )
                    if changed:
                        await processing.after_job_change(tx, row["id"])
                        return Assignment(row["id"], token)
            after = rows[-1]["id"]

    return await db.write(work)
