"""--database-url: which backend it names, its errors, and jobsvc serve on SQLite and PostgreSQL URLs."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from jobsvc.domain.dburl import DatabaseUrl, parse_database_url, redacted
from jobsvc.storage.backends import database_for, open_database
from jobsvc.storage.db import Database
from jobsvc.storage.postgres import PostgresDatabase
from tests.conftest import RunningServer
from tests.realservers import free_ports
from tests.test_cli import assert_one_error, run_jobsvc


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", None),
        ("  ", None),
        ("sqlite:///var/x.db", DatabaseUrl("sqlite", path=Path("var/x.db"))),
        ("sqlite:////srv/jobsvc/x.db", DatabaseUrl("sqlite", path=Path("/srv/jobsvc/x.db"))),
        ("SQLITE:///my%20db.sqlite3", DatabaseUrl("sqlite", path=Path("my db.sqlite3"))),
        ("postgresql://u:p@db:5432/jobsvc", DatabaseUrl("postgresql", dsn="postgresql://u:p@db:5432/jobsvc")),
        ("postgres:///jobsvc?host=/run/postgresql", DatabaseUrl("postgresql", dsn="postgres:///jobsvc?host=/run/postgresql")),
    ],
)  # fmt: skip
def test_urls(url, expected):
    assert parse_database_url(url) == expected


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://u@h/db", "unknown database URL scheme 'mysql'"),
        ("/var/x.db", "not a database URL"),
        ("sqlite://host/x.db", "no host"),
        ("sqlite:///", "needs a path"),
        ("ftp://u:secret@h/x", "unknown database URL scheme"),
    ],
)
def test_bad_urls(url, words):
    with pytest.raises(ValueError, match=words) as caught:
        parse_database_url(url)
    assert "secret" not in str(caught.value)


def test_passwords_are_redacted():
    assert redacted("postgresql://jobsvc:s3cret@db/jobs") == "postgresql://jobsvc:***@db/jobs"
    assert redacted("postgresql://db/jobs") == "postgresql://db/jobs"
    assert "s3cret" not in repr(PostgresDatabase("postgresql://jobsvc:s3cret@db/jobs"))


def test_the_backend_for_each_url(tmp_path):
    default = database_for(None, tmp_path)
    assert isinstance(default, Database) and default.path == tmp_path / "jobsvc.sqlite3"
    assert database_for("sqlite:///" + str(tmp_path / "elsewhere.db"), tmp_path).path == tmp_path / "elsewhere.db"
    postgres = database_for("postgres://db/jobs", tmp_path)
    assert isinstance(postgres, PostgresDatabase) and postgres.dsn == "postgres://db/jobs"
    with pytest.raises(ValueError, match="unknown database URL scheme"):
        database_for("redis://x", tmp_path)


async def test_a_sqlite_url_opens_that_file(tmp_path):
    db = await open_database("sqlite:///" + str(tmp_path / "sub" / "x.db"), tmp_path / "data")
    try:
        assert await db.fetchone("SELECT count(*) AS n FROM jobs") is not None
    finally:
        await db.close()
    assert (tmp_path / "sub" / "x.db").is_file() and not (tmp_path / "data").exists()


def test_a_bad_url_is_a_one_line_error(tmp_path):
    done = run_jobsvc("serve", "--database-url", "mysql://u:pw@h/db", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert done.returncode == 2
    assert_one_error(done.stderr, "--database-url", "unknown database URL scheme 'mysql'")
    done = run_jobsvc("serve", "--data-dir", str(tmp_path / "d"), cwd=tmp_path, env={"JOBSVC_DATABASE_URL": "x"})
    assert done.returncode == 2
    assert_one_error(done.stderr, "JOBSVC_DATABASE_URL", "not a database URL")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_an_unreachable_server_is_a_one_line_error(tmp_path):
    port = free_ports(1)[0]  # nothing listens there
    url = f"postgresql://jobsvc:s3cret@127.0.0.1:{port}/jobs"
    done = run_jobsvc("serve", "--port", "0", "--database-url", url, "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert done.returncode == 2
    assert_one_error(done.stderr, "cannot connect to postgresql://jobsvc:***@127.0.0.1")
    assert "s3cret" not in done.stderr


@pytest.mark.slow
async def test_serve_on_postgres_migrates_and_listens(tmp_path, postgres_dsn):
    server = RunningServer(["--database-url", postgres_dsn, "--data-dir", str(tmp_path / "var")])
    try:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.get(server.url + "/api/v4/user") as resp:
            assert resp.status == 401
    finally:
        assert server.stop() == 0
    conn = await asyncpg.connect(postgres_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 2
    finally:
        await conn.close()
    assert not (tmp_path / "var" / "jobsvc.sqlite3").exists()  # the data directory keeps the files only
