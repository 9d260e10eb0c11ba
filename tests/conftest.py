"""Shared test world: a fixture file every HTTP test gets loaded into a fresh data directory under tmp_path.

Loading it costs more than most tests: it is loaded once per session into a template data directory,
and each test gets its own copy of that (the app's start-up then finds the file loaded and skips it).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import itertools
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps a directory even with its example database off: keep it out of the work tree.
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="jobsvc-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)

from jobsvc.http.app import create_app  # noqa: E402 - after the Hypothesis home is set
from jobsvc.settings import Config  # noqa: E402
from jobsvc.storage import fixture_format, fixtures  # noqa: E402
from jobsvc.storage.backends import database_for  # noqa: E402
from jobsvc.storage.blobs import open_blob_store  # noqa: E402
from jobsvc.storage.db import Database  # noqa: E402
from jobsvc.storage.repo import Repository  # noqa: E402
from jobsvc.storage.store import Store  # noqa: E402

TOKENS = {
    "root": "glpat-test-root-0000000",
    "maintainer": "glpat-test-maint-000000",
    "developer": "glpat-test-dev-00000000",
    "reporter": "glpat-test-reporter-000",
    "guest": "glpat-test-guest-000000",
    "outsider": "glpat-test-outsider-000",
    "readonly": "glpat-test-readonly-000",
    "expired": "glpat-test-expired-0000",
    "revoked": "glpat-test-revoked-0000",
    "blocked": "glpat-test-blocked-0000",
}
RUNNING_JOB_TOKEN = "glcbt-test-running-job-0000"
FINISHED_JOB_TOKEN = "glcbt-test-finished-job-000"
SHA = "0ff3ae198f8601a285adcf5c0fff204ee6fba5fd"
BIG_PROJECT_JOBS = 25
pytest_plugins = ["tests.realservers"]  # real PostgreSQL and S3 servers


def _user(username: str, uid: int, **extra: Any) -> dict[str, Any]:
    name = username
    token: dict[str, Any] = {"token": TOKENS[name]}
    if name == "readonly":
        token["scopes"] = ["read_api"]
    if name == "expired":
        token["expires_at"] = "2020-01-01"
    if name == "revoked":
        token["revoked"] = True
    user = {
        "username": name,
        "id": uid,
        "name": name.capitalize(),
        "email": f"{name}@example.com",
        "created_at": "2015-12-21T13:14:24.077Z",
        "tokens": [token],
    }
    user.update(extra)
    return user


PUBLIC_FILES = {
    "dist/app.txt": "app\n",
    "docs/index.html": "<html><script>alert(1)</script></html>",
    "my dir/": "",
    "my dir/my file.txt": "spaces\n",
    "data.bin": "\u0000\u0001binary",
}


def _archived(job_id: int, name: str, files: dict[str, str]) -> dict[str, Any]:
    return {"id": job_id, "name": name, "status": "success", "artifacts": {"files": files}}


def world() -> dict[str, Any]:
    users = [
        _user("root", 1, admin=True, name="Administrator"),
        _user("maintainer", 2),
        _user("developer", 3),
        _user("reporter", 4),
        _user("guest", 5),
        _user("outsider", 6),
        _user("readonly", 7),
        _user("expired", 8),
        _user("revoked", 9),
        _user("blocked", 10, state="blocked"),
    ]
    members = [
        {"user": u, "role": r}
        for u, r in [
            ("maintainer", "maintainer"),
            ("developer", "developer"),
            ("reporter", "reporter"),
            ("guest", "guest"),
            ("readonly", "developer"),
            ("expired", "developer"),
            ("revoked", "developer"),
            ("blocked", "developer"),
        ]
    ]
    commit = {
        "title": "Test the CI integration.",
        "message": "Test the CI integration.\n",
        "author_name": "Administrator",
        "author_email": "admin@example.com",
        "created_at": "2015-12-24T16:51:14.000+01:00",
    }
    big_jobs = [
        {"id": 1000 + i, "name": f"job-{i}", "status": "success" if i % 3 else "failed"}
        for i in range(1, BIG_PROJECT_JOBS + 1)
    ]
    return {
        "users": users,
        "runners": [
            {
                "id": 1,
                "description": "shared-runner-1",
                "token": "glrt-test-runner-00000",
                "tags": ["docker", "linux"],
                "is_shared": True,
                "x-note": "ignored",
            }
        ],
        "projects": [
            {
                "path": "gitlab-org/gitlab-test",
                "id": 1,
                "visibility": "private",
                "public_builds": False,
                "protected_branches": ["master"],
                "default_branch": "master",
                "members": members,
                "pipelines": [
                    {
                        "id": 6,
                        "ref": "master",
                        "sha": SHA,
                        "user": "root",
                        "created_at": "2015-12-24T15:50:16.123Z",
                        "commit": commit,
                        "jobs": [
                            {
                                "id": 6,
                                "name": "spinach:other",
                                "stage": "test",
                                "status": "failed",
                                "failure_reason": "script_failure",
                                "runner": 1,
                                "tags": ["linux", "docker"],
                                "created_at": "2015-12-24T15:51:21.727Z",
                                "queued_at": "2015-12-24T15:51:21.800Z",
                                "started_at": "2015-12-24T17:54:24.729Z",
                                "finished_at": "2015-12-24T17:54:24.921Z",
                                "coverage": 97.0,
                            },
                            {
                                "id": 7,
                                "name": "teaspoon",
                                "stage": "test",
                                "status": "failed",
                                "retried": True,
                                "trace": "old attempt\n",
                            },
                            {
                                "id": 8,
                                "name": "rubocop",
                                "stage": "test",
                                "status": "success",
                                "runner": 1,
                                "created_at": "2015-12-24T15:51:21.802Z",
                                "started_at": "2015-12-24T17:54:27.722Z",
                                "finished_at": "2015-12-24T17:54:27.895Z",
                                "trace": "Running rubocop\nok\n",
                                "artifacts": {"files": {"out/hello.txt": "hello\n"}, "filename": "artifacts.zip"},
                            },
                            {
                                "id": 9,
                                "name": "teaspoon",
                                "stage": "test",
                                "status": "success",
                                "artifacts": {"files": {"a.txt": "a"}, "expire_at": "2016-01-19T09:05:50.355Z"},
                            },
                            {"id": 10, "name": "deploy", "stage": "deploy", "status": "manual", "when": "manual"},
                            {
                                "id": 11,
                                "name": "live",
                                "stage": "deploy",
                                "status": "running",
                                "user": "developer",
                                "token": RUNNING_JOB_TOKEN,
                                "trace": "started\n",
                            },
                            {
                                "id": 12,
                                "name": "done",
                                "stage": "deploy",
                                "status": "success",
                                "user": "developer",
                                "token": FINISHED_JOB_TOKEN,
                                "variables": {"CI_DEBUG_TRACE": "true"},
                                "trace": "debug output\n",
                            },
                        ],
                    },
                    {
                        "id": 20,
                        "ref": "feature/x",
                        "parent": 6,
                        "source": "parent_pipeline",
                        "user": "developer",
                        "jobs": [{"id": 21, "name": "child", "status": "pending"}],
                    },
                ],
            },
            {
                "path": "group/sub/public-proj",
                "id": 2,
                "visibility": "public",
                "public_builds": True,
                "members": [{"user": "developer", "role": "developer"}],
                "pipelines": [
                    # an older successful main pipeline: its "lint" must not be found by ref
                    {"id": 29, "ref": "main", "jobs": [_archived(28, "lint", {"lint.txt": "ok\n"})]},
                    {"id": 30, "ref": "main", "jobs": [_archived(31, "build", PUBLIC_FILES)]},
                    {"id": 32, "ref": "feature/x.y", "jobs": [_archived(33, "build", {"f.txt": "feature\n"})]},
                    {
                        "id": 34,
                        "ref": "main",
                        "parent": 30,
                        "source": "parent_pipeline",
                        "jobs": [_archived(35, "child-build", {"c.txt": "child\n"})],
                    },
                ],
            },
            {
                "path": "acme/no-public-builds",
                "id": 3,
                "visibility": "public",
                "public_builds": False,
                "pipelines": [{"id": 40, "ref": "main", "jobs": [{"id": 41, "name": "build", "status": "success"}]}],
            },
            {
                "path": "acme/internal",
                "id": 4,
                "visibility": "internal",
                "public_builds": True,
                "pipelines": [{"id": 50, "ref": "main", "jobs": [{"id": 51, "name": "build", "status": "success"}]}],
            },
            {
                "path": "acme/big.app",
                "id": 5,
                "visibility": "private",
                "members": [{"user": "developer", "role": "developer"}],
                "pipelines": [{"id": 60, "ref": "main", "jobs": big_jobs}],
            },
        ],
    }


@functools.cache
def world_text() -> str:
    """The world as a fixture file's text, dumped once (world() is the same every time)."""
    return yaml.safe_dump(world(), sort_keys=False)


@pytest.fixture
def world_file(tmp_path: Path) -> Path:
    path = tmp_path / "world.yaml"
    path.write_text(world_text())
    return path


async def _load_fixtures(config: Config) -> None:
    """What the app's start-up does to a new data directory before it serves: the store, the database, the fixtures."""
    store = open_blob_store(config.data_dir, min_free=config.min_free_space * 1024 * 1024, store_url=config.store_url)
    await store.start()
    db = database_for(config.database_url, config.data_dir)
    await db.open()
    try:
        for path in config.fixtures:
            await fixtures.load_fixture(Repository(db), store, fixture_format.read_fixture(path))
    finally:
        await db.close()
        await store.close()


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The test world loaded once, into a data directory that is closed again (so no WAL beside the database)."""
    folder = tmp_path_factory.mktemp("world-template")
    fixture = folder / "world.yaml"
    fixture.write_text(world_text())
    template = Config(data_dir=folder / "var", fixtures=[str(fixture)])
    _load_world(template)
    assert not template.db_path.with_name(template.db_path.name + "-wal").exists()
    return template


def copy_world(template: Config, data_dir: Path) -> None:
    """A private copy of the loaded world: the database and the store's tree. The database's ballast file
    is left out: the app makes it on opening, as it does in a new data directory."""
    ballast = Database(template.db_path).ballast.name
    shutil.copytree(template.data_dir, data_dir, ignore=shutil.ignore_patterns(ballast), copy_function=shutil.copy)


def _load_world(template: Config) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as thread:  # a loop of its own, whatever the test's loop is
        thread.submit(asyncio.run, _load_fixtures(template)).result()


def s3_store_url(s3_server, bucket: str, prefix: str, extra: str = "") -> str:
    """A --store-url for `prefix` in `bucket` on the session's SeaweedFS."""
    return f"s3://{bucket}/{prefix}?endpoint_url={s3_server.endpoint_url}&region={s3_server.region}{extra}"


@pytest.fixture
def s3_env(s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The credentials an s3:// store reads from the environment, for this test."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)


@dataclass(frozen=True)
class PgS3World:
    """The test world loaded once into a PostgreSQL database and a prefix of a bucket, to be copied per test."""

    config: Config
    database: str
    bucket: str
    prefix: str


@pytest.fixture(scope="session")
def pg_world_template(tmp_path_factory: pytest.TempPathFactory, postgres_server, s3_server) -> PgS3World:
    """The test world loaded once into PostgreSQL and the bucket (a test gets a copy of both)."""
    folder = tmp_path_factory.mktemp("pg-world-template")
    fixture = folder / "world.yaml"
    fixture.write_text(world_text())
    dsn = postgres_server.new_database()
    bucket = s3_server.new_bucket()
    template = Config(
        data_dir=folder / "var",
        fixtures=[str(fixture)],
        database_url=dsn,
        store_url=s3_store_url(s3_server, bucket, "world"),
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
        env.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
        _load_world(template)
    return PgS3World(template, dsn.rsplit("/", 1)[1], bucket, "world")


_prefixes = itertools.count(1)


def copy_objects(s3_server, bucket: str, source: str, target: str) -> None:
    """Server-side copies of every object under `source`/ to `target`/ in `bucket`."""
    client = s3_server.client()
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=source + "/")
        for item in page.get("Contents", [])
    ]

    def copy(key: str) -> None:
        client.copy_object(Bucket=bucket, Key=target + key[len(source) :], CopySource={"Bucket": bucket, "Key": key})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(copy, keys))


# Every in-process HTTP test runs on both deployments: SQLite and a directory under the data directory, and
# PostgreSQL and an S3 bucket (SeaweedFS). A test that reads SQLite's own files says so with
# @pytest.mark.sqlite_only, and one that reads or writes the directory store's files with
# @pytest.mark.directory_store; either runs on the first deployment only.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A sqlite_only or directory_store test keeps its SQLite + directory run only."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        local = item.get_closest_marker("sqlite_only") or item.get_closest_marker("directory_store")
        if params.get("backend") == "postgres" and local:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def config(
    request: pytest.FixtureRequest, tmp_path: Path, world_file: Path, world_template: Config, backend: str
) -> Config:
    config = Config(data_dir=tmp_path / "var", fixtures=[str(world_file)])
    same_world = world_file.read_bytes() == Path(world_template.fixtures[0]).read_bytes()
    if backend == "postgres":
        pg, s3 = request.getfixturevalue("postgres_server"), request.getfixturevalue("s3_server")
        request.getfixturevalue("s3_env")
        prefix = f"test-{next(_prefixes)}"
        if same_world:
            world: PgS3World = request.getfixturevalue("pg_world_template")
            copy_objects(s3, world.bucket, world.prefix, prefix)
            return replace(
                config,
                database_url=pg.new_database(template=world.database),
                store_url=s3_store_url(s3, world.bucket, prefix),
            )
        bucket = request.getfixturevalue("pg_world_template").bucket
        return replace(config, database_url=pg.new_database(), store_url=s3_store_url(s3, bucket, prefix))
    if same_world:
        copy_world(world_template, config.data_dir)
    return config


@pytest.fixture
async def storage(tmp_path: Path):
    """An open database and a prepared store in a fresh data directory, for loader tests."""
    store = Store(tmp_path / "var")
    store.prepare()
    db = Database(tmp_path / "var" / "jobsvc.sqlite3")
    await db.open()
    yield db, store
    await db.close()


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


def auth(name: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": TOKENS[name]}


async def job_log(client, job_id: int) -> bytes:
    """A job's whole log as the API answers it (wherever the deployment keeps it)."""
    resp = await client.get(f"/api/v4/projects/1/jobs/{job_id}/trace", headers=auth("root"))
    assert resp.status == 200, resp.status
    return await resp.read()


async def job_blobs(client, job_id: int) -> list[str]:
    """The keys of the blobs the app's store holds under one job: its artifacts (and, in a bucket, its
    archived log; in a data directory logs are files of their own)."""
    from jobsvc.http.keys import STORE

    keys = [blob.key async for blob in client.app[STORE].list_artifacts()]
    return sorted(key for key in keys if key.split("/")[1] == str(job_id))


def temp_files(config: Config) -> list[Path]:
    """What is left in the data directory's temporary folder (an S3 deployment stages nothing there)."""
    folder = config.data_dir / "tmp"
    return sorted(folder.iterdir()) if folder.is_dir() else []


class RunningServer:
    """``jobsvc serve`` in a child process on a free loopback port; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        import os
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobsvc", "serve", "--port", "0", *args],
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.output: list[str] = []
        self.errors = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if "listening on" in line:
                self.url = line.split("listening on ")[1].split()[0]
                return
        self.stop()
        raise RuntimeError("jobsvc serve did not start:\n" + "".join(self.output) + self.errors)

    def stop(self) -> int:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.errors = self.proc.stderr.read()  # what it logged, for a failing test to show
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode


def serve_fixture(folder: Path, data: dict[str, Any]) -> RunningServer:
    """``jobsvc serve`` on a data directory in ``folder``, loaded with the fixture ``data``."""
    fixture = folder / "fixture.yaml"
    fixture.write_text(yaml.safe_dump(data, sort_keys=False))
    return RunningServer(["--data-dir", str(folder / "var"), "--fixtures", str(fixture)])


@pytest.fixture(scope="module")
def world_server(tmp_path_factory):
    server = serve_fixture(tmp_path_factory.mktemp("world-server"), world())
    yield server
    assert server.stop() == 0
