"""Every statement jobsvc runs, recorded on SQLite: the API driven through its routes, the loader, the CLI.

``record_statements`` runs the app in-process on the test world (tests/conftest.py) and a second
fixture without ids, calls each kind of endpoint (lists with their filters and orders, the runner's
whole job cycle, the job actions, artifact keeping and deleting), then the background tasks and
the token command. It returns each SQL text with the method that ran it, so tests/test_postgres.py
can translate and PREPARE every one on PostgreSQL. tests/sqlsites.py says whether the run reached
every statement written in jobsvc/.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from jobsvc import cli
from jobsvc.http.app import create_app
from jobsvc.http.keys import DB, REPO, STORE
from jobsvc.services import artifacts, processing
from jobsvc.services.leases import Lease
from jobsvc.services.ratelimits import SharedRateLimiter
from jobsvc.settings import Config
from jobsvc.storage.db import Database, Tx
from jobsvc.storage.queries.artifacts import ERASABLE
from tests.conftest import RUNNING_JOB_TOKEN, SHA, auth, world

REGISTRATION = "reg-token-scenario"
EXTRA_TOKEN = "glpat-scenario-extra-00"
CI = """stages: [build, test, deploy]
build: {stage: build, script: [make], artifacts: {paths: [out/], expire_in: 1 week}}
test: {stage: test, script: [make test], needs: [build]}
later: {stage: deploy, script: ["true"], when: delayed, start_in: 1 second}
ship: {stage: deploy, script: ["true"], when: manual}
"""
EXTRA = {
    "external_url": "https://gitlab.example.com/",
    "users": [{"username": "extra", "tokens": [{"token": EXTRA_TOKEN}]}],
    "runners": [
        {"description": "extra-runner", "token": "glrt-scenario-runner-0", "tags": ["extra"],
         "projects": ["extra/app", 1]},
    ],
    "projects": [{
        "path": "extra/app", "default_branch": "main", "ci_config": CI, "visibility": "public",
        "members": [{"user": "extra", "role": "maintainer"}],
        "pipelines": [
            {"ref": "main", "user": "extra", "jobs": [
                {"name": "shipped", "stage": "deploy", "status": "success", "when": "manual",
                 "runner": "shared-runner-1", "artifacts": {"files": {"k.txt": "keep"},
                                                           "expire_at": "2099-01-01T00:00:00Z"}},
                {"name": "tagged", "status": "pending", "tags": ["extra"]},
            ]},
            {"ref": "main", "jobs": [{"name": "other", "status": "created"}]},
        ],
    }],
}  # fmt: skip

Recorded = dict[str, str]  # SQL text -> the method that ran it (fetch, execute, insert, executemany)


def _recording(monkeypatch: pytest.MonkeyPatch, seen: Recorded) -> None:
    def wrap(owner: type, name: str) -> None:
        original = getattr(owner, name)

        async def recorded(self, sql: str, *args: Any, **kwargs: Any) -> Any:
            seen.setdefault(sql, name)
            return await original(self, sql, *args, **kwargs)

        monkeypatch.setattr(owner, name, recorded)

    for name in ("fetchall", "fetchone"):
        wrap(Database, name)
    for name in ("execute", "insert", "executemany", "fetchall", "fetchone"):
        wrap(Tx, name)


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


async def _api(client, tmp_path: Path) -> None:
    root, dev, extra = auth("root"), auth("developer"), {"PRIVATE-TOKEN": EXTRA_TOKEN}
    ok: Callable[..., Awaitable[Any]]

    async def ok(method: str, path: str, status: int | tuple[int, ...] = 200, **kwargs: Any) -> Any:
        resp = await client.request(method, "/api/v4" + path, **kwargs)
        wanted = status if isinstance(status, tuple) else (status,)
        assert resp.status in wanted, f"{method} {path}: {resp.status} {(await resp.text())[:300]}"
        return resp

    # who is asking; projects by every filter and order
    await ok("GET", "/user", headers=root)
    await ok("GET", "/projects")
    for query in (
        "",
        "?membership=true",
        "?visibility=public&search=gitlab_test%25",
        "?order_by=name&sort=asc",
        "?order_by=path",
        "?order_by=updated_at",
        "?order_by=created_at",
        "?order_by=last_activity_at",
    ):
        await ok("GET", "/projects" + query, headers=dev)
    await ok("GET", "/projects?order_by=name", headers=root)
    await ok("GET", "/projects/1", headers=root)
    await ok("GET", "/projects/gitlab-org%2Fgitlab-test", headers=dev)
    # the pages for people: the pipelines list draws each pipeline's jobs (repo.latest_jobs)
    page = await client.get("/group/sub/public-proj/-/pipelines")
    assert page.status == 200, page.status
    # pipelines and their jobs
    for query in (
        "",
        "?scope=running",
        "?scope=pending",
        "?scope=finished",
        "?scope=branches",
        "?scope=tags",
        "?status=success&ref=master",
        f"?sha={SHA}",
        "?source=parent_pipeline",
        "?username=root",
        "?order_by=updated_at&sort=asc",
        "?order_by=user_id",
        "?order_by=status",
        "?order_by=ref",
    ):
        await ok("GET", "/projects/1/pipelines" + query, headers=root)
    await ok("GET", "/projects/1/pipelines/6", headers=root)
    await ok("GET", "/projects/1/pipelines/6/jobs", headers=root)
    await ok("GET", "/projects/1/pipelines/6/jobs?scope[]=success&scope[]=failed&include_retried=true", headers=root)
    # jobs: offset and keyset pages, by status
    await ok("GET", "/projects/5/jobs?per_page=2&page=2", headers=dev)
    await ok("GET", "/projects/5/jobs?scope[]=failed&scope[]=success", headers=dev)
    first = await ok("GET", "/projects/5/jobs?pagination=keyset&per_page=3&order_by=id&sort=desc", headers=dev)
    following = first.links["next"]["url"]
    await ok("GET", f"{following.path.removeprefix('/api/v4')}?{following.query_string}", headers=dev)
    await ok("GET", "/projects/1/jobs/8", headers=root)
    await ok("GET", "/projects/1/jobs/8/trace", headers=root)
    await ok("GET", "/projects/1/jobs/8/artifacts", headers=root)
    await ok("GET", "/projects/1/jobs/8/artifacts/out/hello.txt", headers=root)
    await ok("GET", "/projects/2/jobs/artifacts/main/download?job=build")
    await ok("GET", "/projects/2/jobs/artifacts/main/raw/dist/app.txt?job=build")
    # a pipeline from the CI definition (its first stage is pending at once), and an unknown ref
    await ok("POST", "/projects/extra%2Fapp/pipeline?ref=main", 201, headers=extra)
    await ok("POST", "/projects/extra%2Fapp/pipeline?ref=nowhere", 400, headers=extra)
    # the runner: register, verify, take a job, run it, log, upload, finish, unregister
    registered = await (await ok("POST", "/runners", 201, json={"token": REGISTRATION, "tag_list": "a,b"})).json()
    await ok("POST", "/runners/verify", json={"token": registered["token"]})
    await ok("POST", "/jobs/request", (201, 204), json={"token": "glrt-test-runner-00000", "info": {"name": "r"}})
    taken = await ok("POST", "/jobs/request", 201, json={"token": "glrt-scenario-runner-0"})
    job = await taken.json()
    await ok("POST", "/jobs/request", (201, 204), json={"token": "glrt-scenario-runner-0", "last_update": "x"})
    job_auth = {"JOB-TOKEN": job["token"]}
    await ok("GET", "/job", headers=job_auth)
    await ok("PUT", f"/jobs/{job['id']}", json={"token": job["token"], "state": "running"})
    await ok("PATCH", f"/jobs/{job['id']}/trace", 202, data=b"hello\n", headers={**job_auth, "Content-Range": "0-5"})
    form = aiohttp.FormData()
    form.add_field("file", _zip({"out/x.txt": "x"}), filename="artifacts.zip", content_type="application/zip")
    await ok("POST", f"/jobs/{job['id']}/artifacts?expire_in=1%20day", 201, data=form, headers=job_auth)
    await ok("GET", f"/jobs/{job['id']}/artifacts", headers=job_auth)
    await ok("PUT", f"/jobs/{job['id']}", json={"token": job["token"], "state": "success"})
    running = {"JOB-TOKEN": RUNNING_JOB_TOKEN}
    await ok("GET", "/jobs/8/artifacts", headers=running)
    await ok("PUT", "/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "failed", "failure_reason": "x"})
    await ok("DELETE", "/runners", 204, json={"token": registered["token"]})
    # the job actions
    await ok("POST", "/projects/1/jobs/21/cancel", 201, headers=root)
    await ok("POST", "/projects/1/jobs/6/retry", 201, headers=root)
    await ok("POST", "/projects/1/jobs/10/play", 200, headers=root,
             json={"job_variables_attributes": [{"key": "A", "value": "1"}]})  # fmt: skip
    listed = await (await ok("GET", "/projects/extra%2Fapp/jobs?scope[]=success", headers=extra)).json()
    shipped = next(job for job in listed if job["name"] == "shipped")
    await ok("POST", f"/projects/extra%2Fapp/jobs/{shipped['id']}/play", 200, headers=extra,
             json={"job_variables_attributes": [{"key": "B", "value": "2"}]})  # fmt: skip
    await ok("POST", f"/projects/extra%2Fapp/jobs/{shipped['id']}/artifacts/keep", 200, headers=extra)
    await ok("POST", "/projects/1/jobs/8/erase", 201, headers=root)
    await ok("DELETE", "/projects/2/jobs/31/artifacts", 204, headers=root)
    await ok("DELETE", "/projects/2/artifacts", 202, headers=root)


async def record_statements(monkeypatch: pytest.MonkeyPatch, aiohttp_client, tmp_path: Path) -> Recorded:
    seen: Recorded = {}
    _recording(monkeypatch, seen)
    world_file, extra_file = tmp_path / "world.yaml", tmp_path / "extra.yaml"
    world_file.write_text(yaml.safe_dump(world(), sort_keys=False))
    extra_file.write_text(yaml.safe_dump(EXTRA, sort_keys=False))
    config = Config(data_dir=tmp_path / "var", fixtures=[str(world_file), str(extra_file)],
                    registration_token=REGISTRATION)  # fmt: skip
    app = create_app(config)
    client = await aiohttp_client(app)
    await _api(client, tmp_path)
    db, store, repo = app[DB], app[STORE], app[REPO]
    await asyncio.sleep(1.1)  # the delayed job's start_in
    await repo.write(processing.enqueue_due)
    await artifacts.sweep(repo, store)
    await repo.artifacts.keys(ERASABLE, (31,))  # what a delete on a full disk removes first
    await repo.user_by_id(1)
    lease = Lease(repo, "scheduler", 10, shared=True)  # as on a database several processes share
    scheduler = asyncio.create_task(processing.scheduler(repo, lease, interval=0.01))
    await asyncio.sleep(0.1)
    scheduler.cancel()
    await asyncio.gather(scheduler, return_exceptions=True)
    await SharedRateLimiter(repo, 600).hit("jobs", 1)  # as on a database several processes share
    assert db is repo.db
    await client.close()
    await cli._create_token(config.data_dir, config.database_url, "root", "api", "scenario", None)
    return seen
