"""Loading a validated fixture (see :mod:`jobsvc.storage.fixture_format`) in one transaction.

``load_fixture`` resolves references against the database, writes logs and archives
through the store, and inserts everything in one write transaction: all or nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jobsvc.domain import tokens
from jobsvc.domain.policy import ROLES
from jobsvc.domain.statuses import FINISHED, QUEUED, STARTED, composite
from jobsvc.domain.timefmt import format_utc, format_with_offset, utcnow
from jobsvc.storage.blobs import BlobStore, StoredFile
from jobsvc.storage.db import Tx
from jobsvc.storage.fixture_format import Fixture, FixtureError, inside
from jobsvc.storage.queries.conn import Reader
from jobsvc.storage.queries.traces import TraceChunks
from jobsvc.storage.repo import Repository
from jobsvc.storage.unit import Unit

# --- loading ----------------------------------------------------------------------------

ONE_SECOND = timedelta(seconds=1)

# told the jobs loaded so far and the fixture's number of jobs, after each job
Progress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    pass


@dataclass
class LoadSummary:
    name: str
    skipped: bool = False
    users: int = 0
    runners: int = 0
    projects: int = 0
    pipelines: int = 0
    jobs: int = 0

    def __str__(self) -> str:
        if self.skipped:
            return f"{self.name}: already loaded, skipped"
        return (
            f"{self.name}: loaded {self.users} users, {self.runners} runners, {self.projects} projects, "
            f"{self.pipelines} pipelines, {self.jobs} jobs"
        )


def _utc(moment: datetime | None) -> str | None:
    return format_utc(moment) if moment is not None else None


def job_times(job: Mapping[str, Any], anchor: datetime) -> dict[str, datetime | None]:
    """Fill in the times a status implies: created ≤ queued ≤ started ≤ finished."""
    status = job["status"]
    created = job["created_at"] or anchor
    queued = job["queued_at"] or (created + ONE_SECOND if status in QUEUED else None)
    started = job["started_at"] or (max(queued or created, created) + ONE_SECOND if status in STARTED else None)
    finished = job["finished_at"]
    if finished is None and status in FINISHED:
        finished = (started or queued or created) + timedelta(seconds=60 if started else 1)
    return {"created_at": created, "queued_at": queued, "started_at": started, "finished_at": finished}


def zip_files(files: Mapping[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def zip_dir(folder: Path, target: Path) -> None:
    """Zip a folder into ``target`` (symlinks are left out, directories get their own entries)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink():
                continue
            name = path.relative_to(folder).as_posix()
            if path.is_dir():
                archive.writestr(name + "/", b"")
            elif path.is_file():
                archive.write(path, name)


DEFAULT_STAGES = (".pre", "build", "test", "deploy", ".post")


def stage_order(stages: list[str]) -> dict[str, int]:
    """Stage positions: GitLab's default order when every stage is a default one, else first appearance."""
    distinct = list(dict.fromkeys(stages))
    if all(stage in DEFAULT_STAGES for stage in distinct):
        distinct.sort(key=DEFAULT_STAGES.index)
    return {stage: index for index, stage in enumerate(distinct)}


class _Loader:
    """One fixture's trip into the database, inside one write transaction."""

    def __init__(self, tx: Tx, store: BlobStore, fixture: Fixture, progress: Progress = _no_progress):
        self.tx, self.store, self.fixture = tx, store, fixture
        self.progress = progress
        self.total_jobs = sum(len(pl["jobs"]) for pr in fixture.data["projects"] for pl in pr["pipelines"])
        self.problems: list[str] = []
        self.written: list[StoredFile] = []
        self.users: dict[str, int] = {}
        self.runners: dict[int | str, int] = {}
        self.projects: dict[int | str, int] = {}
        self.summary = LoadSummary(fixture.name)
        self.now = utcnow()
        self.next_ids: dict[str, int] = {}

    async def _next_id(self, table: str, explicit: list[int]) -> int:
        if table not in self.next_ids:
            row = await self.tx.fetchone(f"SELECT COALESCE(MAX(id), 0) AS id FROM {table}")
            self.next_ids[table] = max([row["id"] if row else 0, *explicit]) + 1
        value = self.next_ids[table]
        self.next_ids[table] += 1
        return value

    async def _clashes(self, table: str, ids: list[tuple[int, str]]) -> None:
        for value, where in ids:
            if await self.tx.fetchone(f"SELECT 1 FROM {table} WHERE id = ?", (value,)):
                self.problems.append(f"{where}.id: {value} already exists in the database")

    def _fail_if_problems(self) -> None:
        if self.problems:
            raise FixtureError(self.problems)

    async def run(self) -> LoadSummary:
        data = self.fixture.data
        await self._check_database()
        self._fail_if_problems()
        await self._users(data["users"])
        await self._projects(data["projects"])
        await self._runners(data["runners"])
        self._fail_if_problems()
        for p_index, project in enumerate(data["projects"]):
            await self._pipelines(p_index, project)
        self._fail_if_problems()
        if data["external_url"]:
            await self.tx.execute(
                "INSERT OR REPLACE INTO instance_settings (key, value) VALUES ('external_url', ?)",
                (data["external_url"].rstrip("/"),),
            )
        await self.tx.execute(
            "INSERT INTO fixture_loads (sha256, name, loaded_at) VALUES (?, ?, ?)",
            (self.fixture.sha256, self.fixture.name, format_utc(self.now)),
        )
        return self.summary

    async def _check_database(self) -> None:
        data = self.fixture.data
        await self._clashes("users", [(u["id"], f"users[{i}]") for i, u in enumerate(data["users"]) if u["id"]])
        await self._clashes("runners", [(r["id"], f"runners[{i}]") for i, r in enumerate(data["runners"]) if r["id"]])
        await self._clashes(
            "projects", [(p["id"], f"projects[{i}]") for i, p in enumerate(data["projects"]) if p["id"]]
        )
        pipelines, jobs = [], []
        for pi, project in enumerate(data["projects"]):
            for li, pipeline in enumerate(project["pipelines"]):
                if pipeline["id"]:
                    pipelines.append((pipeline["id"], f"projects[{pi}].pipelines[{li}]"))
                jobs += [
                    (job["id"], f"projects[{pi}].pipelines[{li}].jobs[{ji}]")
                    for ji, job in enumerate(pipeline["jobs"])
                    if job["id"]
                ]
        await self._clashes("pipelines", pipelines)
        await self._clashes("jobs", jobs)
        for index, user in enumerate(data["users"]):
            if await self.tx.fetchone("SELECT 1 FROM users WHERE username = ?", (user["username"],)):
                self.problems.append(f"users[{index}].username: {user['username']!r} already exists in the database")
            for t_index, token in enumerate(user["tokens"]):
                if await self.tx.fetchone(
                    "SELECT 1 FROM personal_access_tokens WHERE digest = ?", (tokens.digest(token["token"]),)
                ):
                    self.problems.append(f"users[{index}].tokens[{t_index}].token: already exists in the database")
        for index, project in enumerate(data["projects"]):
            if await self.tx.fetchone("SELECT 1 FROM projects WHERE path_with_namespace = ?", (project["path"],)):
                self.problems.append(f"projects[{index}].path: {project['path']!r} already exists in the database")

    async def _user_id(self, name: str | None, where: str) -> int | None:
        if name is None:
            return None
        key = name.lower()
        if key not in self.users:
            row = await self.tx.fetchone("SELECT id FROM users WHERE username = ?", (name,))
            if row is None:
                self.problems.append(f"{where}: no user {name!r}")
                return None
            self.users[key] = row["id"]
        return self.users[key]

    async def _users(self, users: list[dict[str, Any]]) -> None:
        explicit = [u["id"] for u in users if u["id"]]
        for user in users:
            user_id = user["id"] or await self._next_id("users", explicit)
            self.users[user["username"].lower()] = user_id
            await self.tx.execute(
                """INSERT INTO users (id, username, name, email, state, admin, avatar_url, bio, location,
                       public_email, linkedin, twitter, website_url, organization, job_title, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    user_id,
                    user["username"],
                    user["name"] or user["username"],
                    user["email"],
                    user["state"],
                    int(user["admin"]),
                    user["avatar_url"],
                    user["bio"] or "",
                    user["location"] or "",
                    user["public_email"],
                    user["linkedin"] or "",
                    user["twitter"] or "",
                    user["website_url"] or "",
                    user["organization"] or "",
                    user["job_title"] or "",
                    _utc(user["created_at"] or self.now),
                ),
            )
            for token in user["tokens"]:
                await self.tx.execute(
                    """INSERT INTO personal_access_tokens
                           (user_id, name, digest, scopes, expires_at, revoked, created_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?)""",
                    (
                        user_id,
                        token["name"],
                        tokens.digest(token["token"]),
                        json.dumps(token["scopes"]),
                        token["expires_at"].isoformat() if token["expires_at"] else None,
                        int(token["revoked"]),
                        format_utc(self.now),
                    ),
                )
            self.summary.users += 1

    async def _project_id(self, ref: int | str, where: str) -> int | None:
        if ref in self.projects:
            return self.projects[ref]
        key = ref.lower() if isinstance(ref, str) else ref
        if key in self.projects:
            return self.projects[key]
        column = "id" if isinstance(ref, int) else "path_with_namespace"
        row = await self.tx.fetchone(f"SELECT id FROM projects WHERE {column} = ?", (ref,))
        if row is None:
            self.problems.append(f"{where}: no project {ref!r}")
            return None
        return row["id"]

    async def _projects(self, projects: list[dict[str, Any]]) -> None:
        explicit = [p["id"] for p in projects if p["id"]]
        now = format_utc(self.now)
        for index, project in enumerate(projects):
            project_id = project["id"] or await self._next_id("projects", explicit)
            project["_id"] = project_id
            self.projects[project_id] = project_id
            self.projects[project["path"].lower()] = project_id
            await self.tx.execute(
                """INSERT INTO projects (id, path_with_namespace, name, description, visibility, public_builds,
                       ci_job_token_scope_enabled, default_branch, ci_config, created_at, last_activity_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    project_id,
                    project["path"],
                    project["name"] or project["path"].rsplit("/", 1)[1],
                    project["description"],
                    project["visibility"],
                    int(project["public_builds"]),
                    int(project["ci_job_token_scope_enabled"]),
                    project["default_branch"],
                    project["ci_config"],
                    now,
                    now,
                ),
            )
            for branch in dict.fromkeys(project["protected_branches"]):
                await self.tx.execute(
                    "INSERT INTO protected_branches (project_id, name) VALUES (?, ?)", (project_id, branch)
                )
            seen: set[int] = set()
            for m_index, member in enumerate(project["members"]):
                user_id = await self._user_id(member["user"], f"projects[{index}].members[{m_index}].user")
                if user_id is None:
                    continue
                if user_id in seen:
                    self.problems.append(
                        f"projects[{index}].members[{m_index}].user: {member['user']!r} is listed twice"
                    )
                    continue
                seen.add(user_id)
                await self.tx.execute(
                    "INSERT INTO members (project_id, user_id, access_level) VALUES (?, ?, ?)",
                    (project_id, user_id, ROLES[member["role"]]),
                )
            self.summary.projects += 1

    async def _runners(self, runners: list[dict[str, Any]]) -> None:
        explicit = [r["id"] for r in runners if r["id"]]
        for index, runner in enumerate(runners):
            runner_id = runner["id"] or await self._next_id("runners", explicit)
            self.runners[runner_id] = runner_id
            if runner["description"]:
                self.runners[runner["description"]] = runner_id
            await self.tx.execute(
                """INSERT INTO runners
                       (id, description, token_digest, tags, run_untagged, paused, is_shared, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    runner_id,
                    runner["description"],
                    tokens.digest(runner["token"]) if runner["token"] else None,
                    json.dumps(sorted(set(runner["tags"]))),
                    int(runner["run_untagged"]),
                    int(runner["paused"]),
                    int(runner["is_shared"]),
                    format_utc(self.now),
                ),
            )
            for p_index, ref in enumerate(runner["projects"]):
                project_id = await self._project_id(ref, f"runners[{index}].projects[{p_index}]")
                if project_id is not None:
                    await self.tx.execute(
                        "INSERT OR IGNORE INTO runner_projects (runner_id, project_id) VALUES (?, ?)",
                        (runner_id, project_id),
                    )
            self.summary.runners += 1

    async def _runner_id(self, ref: int | str | None, where: str) -> int | None:
        if ref is None:
            return None
        if ref not in self.runners:
            column = "id" if isinstance(ref, int) else "description"
            row = await self.tx.fetchone(f"SELECT id FROM runners WHERE {column} = ?", (ref,))
            if row is None:
                self.problems.append(f"{where}: no runner {ref!r}")
                return None
            self.runners[ref] = row["id"]
        return self.runners[ref]

    async def _pipelines(self, p_index: int, project: dict[str, Any]) -> None:
        project_id = project["_id"]
        explicit_pipelines = [p["id"] for pr in self.fixture.data["projects"] for p in pr["pipelines"] if p["id"]]
        explicit_jobs = [
            j["id"] for pr in self.fixture.data["projects"] for p in pr["pipelines"] for j in p["jobs"] if j["id"]
        ]
        row = await self.tx.fetchone(
            "SELECT COALESCE(MAX(iid), 0) AS id FROM pipelines WHERE project_id = ?", (project_id,)
        )
        next_iid = max([row["id"] if row else 0, *[p["iid"] for p in project["pipelines"] if p["iid"]]]) + 1
        parents: list[tuple[int, int, str]] = []
        for l_index, pipeline in enumerate(project["pipelines"]):
            where = f"projects[{p_index}].pipelines[{l_index}]"
            pipeline_id = pipeline["id"] or await self._next_id("pipelines", explicit_pipelines)
            iid = pipeline["iid"]
            if iid is None:
                iid, next_iid = next_iid, next_iid + 1
            # Without a time, a pipeline is taken to have started ten minutes ago, so that the
            # times derived for its jobs (a few seconds apart) are all in the past.
            created = pipeline["created_at"] or self.now - timedelta(minutes=10)
            sha = pipeline["sha"] or hashlib.sha1(f"{project['path']}:{pipeline_id}".encode()).hexdigest()
            ref = pipeline["ref"] or project["default_branch"]
            user_id = await self._user_id(pipeline["user"], f"{where}.user")
            await self._commit(project_id, sha, pipeline["commit"], created)
            jobs = []
            for j_index, job in enumerate(pipeline["jobs"]):
                job_id = job["id"] or await self._next_id("jobs", explicit_jobs)
                jobs.append((job_id, job, job_times(job, created), f"{where}.jobs[{j_index}]"))
            latest = [(job["status"], self._allow_failure(job)) for _, job, _, _ in jobs if not job["retried"]]
            status = pipeline["status"] or composite(latest) or "success"
            started = [t["started_at"] for _, _, t, _ in jobs if t["started_at"]]
            finished = [t["finished_at"] for _, _, t, _ in jobs if t["finished_at"]]
            moments = [created, *started, *finished]
            await self.tx.execute(
                """INSERT INTO pipelines (id, iid, project_id, ref, sha, before_sha, tag, source, status, user_id,
                       artifacts_locked, created_at, updated_at, started_at, finished_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    pipeline_id,
                    iid,
                    project_id,
                    ref,
                    sha,
                    pipeline["before_sha"] or "0" * 40,
                    int(pipeline["tag"]),
                    pipeline["source"],
                    status,
                    user_id,
                    int(pipeline["artifacts_locked"]),
                    _utc(created),
                    _utc(max(moments)),
                    _utc(min(started)) if started else None,
                    _utc(max(finished)) if finished and status in FINISHED | {"skipped"} else None,
                ),
            )
            if pipeline["parent"] is not None:
                parents.append((pipeline_id, pipeline["parent"], f"{where}.parent"))
            order = stage_order([job["stage"] for job in pipeline["jobs"]])
            for job_id, job, times, jwhere in jobs:
                job["_stage_idx"] = order[job["stage"]]
                await self._job(job_id, project_id, pipeline_id, job, times, user_id, jwhere)
            self.summary.pipelines += 1
        for pipeline_id, parent, where in parents:
            if parent == pipeline_id:
                self.problems.append(f"{where}: a pipeline cannot be its own parent")
                continue
            owner = await self.tx.fetchone("SELECT project_id FROM pipelines WHERE id = ?", (parent,))
            if owner is None or owner["project_id"] != project_id:
                self.problems.append(f"{where}: no pipeline {parent} in this project")
                continue
            await self.tx.execute("UPDATE pipelines SET parent_id = ? WHERE id = ?", (parent, pipeline_id))

    @staticmethod
    def _allow_failure(job: Mapping[str, Any]) -> bool:
        if job["allow_failure"] is not None:
            return bool(job["allow_failure"])
        return job["when"] == "manual"

    async def _commit(self, project_id: int, sha: str, commit: Mapping[str, Any], created: datetime) -> None:
        date_ = commit.get("created_at") or created
        author = commit.get("author_name") or "Administrator"
        email = commit.get("author_email") or "admin@example.com"
        title = commit.get("title") or (commit.get("message") or "Commit").splitlines()[0]
        await self.tx.execute(
            """INSERT OR IGNORE INTO commits (project_id, sha, title, message, author_name, author_email,
                   authored_date, committer_name, committer_email, committed_date, created_at, parent_ids)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                project_id,
                sha,
                title,
                commit.get("message") or title,
                author,
                email,
                format_with_offset(commit.get("authored_date") or date_),
                commit.get("committer_name") or author,
                commit.get("committer_email") or email,
                format_with_offset(commit.get("committed_date") or date_),
                format_with_offset(date_),
                json.dumps(commit.get("parent_ids") or []),
            ),
        )

    async def _job(
        self,
        job_id: int,
        project_id: int,
        pipeline_id: int,
        job: dict[str, Any],
        times: dict[str, datetime | None],
        pipeline_user: int | None,
        where: str,
    ) -> None:
        user_id = await self._user_id(job["user"], f"{where}.user") if job["user"] else pipeline_user
        runner_id = await self._runner_id(job["runner"], f"{where}.runner")
        status = job["status"]
        failure_reason = job["failure_reason"] or ("unknown_failure" if status == "failed" else None)
        artifacts = job["artifacts"]
        expire_at = _utc(artifacts["expire_at"]) if artifacts and not artifacts["locked"] else None
        updated = max(t for t in times.values() if t is not None)
        await self.tx.execute(
            """INSERT INTO jobs (id, project_id, pipeline_id, name, stage, stage_idx, status, "when", allow_failure,
                   failure_reason, coverage, user_id, runner_id, retried, token_digest, script, variables, tags,
                   created_at, updated_at, queued_at, started_at, finished_at, erased_at, artifacts_expire_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                job_id,
                project_id,
                pipeline_id,
                job["name"],
                job["stage"],
                job["_stage_idx"],
                status,
                job["when"],
                int(self._allow_failure(job)),
                failure_reason,
                job["coverage"],
                user_id,
                runner_id,
                int(job["retried"]),
                tokens.digest(job["token"]) if job["token"] else None,
                json.dumps(job["script"]),
                json.dumps({k: str(v) for k, v in job["variables"].items()}),
                json.dumps(sorted(set(job["tags"]))),
                _utc(times["created_at"]),
                _utc(updated),
                _utc(times["queued_at"]),
                _utc(times["started_at"]),
                _utc(times["finished_at"]),
                _utc(job["erased_at"]),
                expire_at,
            ),
        )
        await self._trace(job_id, project_id, job, where)
        if artifacts:
            await self._archive(job_id, project_id, artifacts, expire_at, where)
        self.summary.jobs += 1
        self.progress(self.summary.jobs, self.total_jobs)

    async def _trace(self, job_id: int, project_id: int, job: Mapping[str, Any], where: str) -> None:
        finished = job["status"] in {"success", "failed", "canceled", "skipped"}
        path = None
        if job["trace_file"] is not None:
            path = inside(self.fixture.folder, job["trace_file"])
            assert path is not None  # checked when the fixture was read
        elif job["trace"] is None:
            return
        if not finished and self.store.kind != "directory":  # a live log: chunks in the database
            with open(path, "rb") if path is not None else io.BytesIO(job["trace"].encode("utf-8")) as body:
                await TraceChunks(self.tx).append(job_id, body, format_utc(self.now))
            return
        if path is not None:
            stored = await self.store.put_trace_file(job_id, path)  # copied in chunks: logs may be large
        else:
            stored = await self.store.put_trace(job_id, job["trace"].encode("utf-8"))
        self.written.append(stored)
        if finished:
            await self.tx.execute(
                """INSERT INTO job_artifacts (job_id, project_id, file_type, file_format, filename, size, sha256,
                       store_key, created_at) VALUES (?, ?, 'trace', NULL, 'job.log', ?, ?, ?, ?)""",
                (job_id, project_id, stored.size, stored.sha256, stored.key, format_utc(self.now)),
            )

    async def _archive(
        self, job_id: int, project_id: int, artifacts: Mapping[str, Any], expire_at: str | None, where: str
    ) -> None:
        if artifacts["files"] is not None:
            stored = await self.store.put_bytes(job_id, zip_files(artifacts["files"]), "zip")
        elif artifacts["dir"] is not None:
            folder = inside(self.fixture.folder, artifacts["dir"])
            assert folder is not None
            built = self.store.temp_file()  # zipped to disk, not to memory: a folder may be large
            try:
                zip_dir(folder, built)
                stored = await self.store.put_file(job_id, built, "zip")
            finally:
                built.unlink(missing_ok=True)
        else:
            path = inside(self.fixture.folder, artifacts["archive"])
            assert path is not None
            if not zipfile.is_zipfile(path):
                self.problems.append(f"{where}.artifacts.archive: {artifacts['archive']!r} is not a zip archive")
                return
            stored = await self.store.put_file(job_id, path, "zip")  # copied in chunks: archives may be large
        self.written.append(stored)
        await self.tx.execute(
            """INSERT INTO job_artifacts (job_id, project_id, file_type, file_format, filename, size, sha256,
                   store_key, locked, expire_at, created_at) VALUES (?, ?, 'archive', 'zip', ?, ?, ?, ?, ?, ?, ?)""",
            (
                job_id,
                project_id,
                artifacts["filename"],
                stored.size,
                stored.sha256,
                stored.key,
                int(artifacts["locked"]),
                expire_at,
                format_utc(self.now),
            ),
        )


async def already_loaded(conn: Reader, fixture: Fixture) -> bool:
    """Whether this file was loaded before (on the reader, or inside a load's own transaction)."""
    found = await conn.fetchone("SELECT 1 AS loaded FROM fixture_loads WHERE sha256 = ?", (fixture.sha256,))
    return found is not None


async def load_fixture(
    repo: Repository, store: BlobStore, fixture: Fixture, progress: Progress = _no_progress
) -> LoadSummary:
    """Load a validated fixture, all or nothing; a file loaded before is skipped. ``progress`` hears of
    each job loaded (from the start again should the transaction run again)."""
    if await already_loaded(repo.db, fixture):
        return LoadSummary(fixture.name, skipped=True)
    written: list[StoredFile] = []

    async def work(unit: Unit) -> LoadSummary:
        # again inside the transaction: another process starting beside this one may have loaded it meanwhile,
        # and a second load must write nothing, not even a file
        if await already_loaded(unit.tx, fixture):
            return LoadSummary(fixture.name, skipped=True)
        loader = _Loader(unit.tx, store, fixture, progress)
        try:
            return await loader.run()
        finally:
            written.extend(loader.written)

    try:
        return await repo.write(work)
    except sqlite3.IntegrityError as exc:
        await _remove(store, written)
        raise FixtureError([f"(database): {exc}"], fixture.source) from None
    except FixtureError as exc:
        await _remove(store, written)
        exc.source = fixture.source
        raise
    except BaseException:
        await _remove(store, written)
        raise


async def _remove(store: BlobStore, written: list[StoredFile]) -> None:
    """Files written for a load that did not commit: their job ids were new, nothing else uses them."""
    for stored in written:
        await store.remove(stored.key)
