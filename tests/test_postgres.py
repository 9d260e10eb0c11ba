"""PostgresDatabase on a real PostgreSQL server (tests/realservers.py): migrations, serialized writes,
rows as SQLite gives them, errors, and every statement of jobsvc/ translated and prepared there."""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import sqlite3
import subprocess
from pathlib import Path

import asyncpg
import pytest

from jobsvc.services.leases import Lease
from jobsvc.services.ratelimits import SharedRateLimiter
from jobsvc.storage.db import DatabaseFull, migrations, schema_path
from jobsvc.storage.postgres import ConstraintViolation, PostgresDatabase, migrate
from jobsvc.storage.repo import Repository
from tests.pgscenario import record_statements
from tests.sqlsites import sites

pytestmark = pytest.mark.slow

VERSIONS = [version for version, _ in migrations(schema_path("schema.postgres.sql").read_text(encoding="utf-8"))]


@pytest.fixture
async def pg(postgres_dsn):
    db = PostgresDatabase(postgres_dsn)
    await db.open()
    yield db
    await db.close()


async def _applied(dsn: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(row) for row in await conn.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY 1")]
    finally:
        await conn.close()


async def test_migrations_apply_on_an_empty_database_and_twice_change_nothing(postgres_dsn):
    db = PostgresDatabase(postgres_dsn)
    await db.open()
    first = await _applied(postgres_dsn)
    assert [version for version, _ in first] == VERSIONS
    assert await db.fetchone("SELECT count(*) AS n FROM jobs") == {"n": 0}
    await db.close()
    again = PostgresDatabase(postgres_dsn)
    await again.open()  # nothing to apply: the same rows, the same times
    assert await _applied(postgres_dsn) == first
    await again.close()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        assert await migrate(conn, schema_path("schema.postgres.sql").read_text(encoding="utf-8")) == VERSIONS[-1]
    finally:
        await conn.close()
    assert await _applied(postgres_dsn) == first


async def test_two_stores_starting_together_migrate_once(postgres_dsn):
    """As two processes would: separate pools, both at open() at once; the advisory lock lets one migrate."""
    stores = [PostgresDatabase(postgres_dsn) for _ in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        assert [version for version, _ in await _applied(postgres_dsn)] == VERSIONS
        for store in stores:
            assert await store.fetchone("SELECT count(*) AS n FROM projects") == {"n": 0}
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_fifty_writers_read_check_insert_once(postgres_dsn):
    """Each transaction looks for a token named "racer" and, not finding it, creates it after a pause: the
    lock serializes them across stores (processes) as BEGIN IMMEDIATE does, so one creates it, 49 see it.
    personal_access_tokens.name has no UNIQUE constraint: only the serialization keeps it to one row."""
    stores = [PostgresDatabase(postgres_dsn) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        user = await stores[0].write(
            lambda tx: tx.insert("INSERT INTO users (username, name, created_at) VALUES ('racer', 'R', 'now')")
        )

        async def work(tx) -> bool:
            if await tx.fetchone("SELECT 1 FROM personal_access_tokens WHERE name = ?", ("racer",)):
                return False
            await asyncio.sleep(0.01)  # what a check-then-insert race needs to lose
            await tx.execute(
                "INSERT INTO personal_access_tokens (user_id, name, digest, scopes, created_at) VALUES (?, ?, ?, ?, ?)",
                (user, "racer", secrets.token_hex(16), '["api"]', "now"),
            )
            return True

        made = await asyncio.gather(*(stores[i % 2].write(work) for i in range(50)))
        assert made.count(True) == 1
        count = await stores[1].fetchone("SELECT count(*) FROM personal_access_tokens WHERE name = 'racer'")
        assert count == {"count(*)": 1}
    finally:
        for store in stores:
            await store.close()


async def test_rows_are_dicts_with_sqlites_keys_and_values(pg):
    async def work(tx):
        await tx.execute("INSERT INTO users (id, username, name, admin, created_at) VALUES (?, ?, ?, ?, ?)",
                         (7, "Ada", "Ada L", True, "2015-12-21T13:14:24.077Z"))  # fmt: skip
        return await tx.insert("INSERT INTO users (username, name, created_at) VALUES (?, ?, ?)", ("bob", "B", "t"))

    assert await pg.write(work) == 8  # the sequence moved past the explicit id
    row = await pg.fetchone(
        "SELECT count(*), max(id), EXISTS (SELECT 1 FROM users WHERE username = 'ADA') AS ada, sum(admin) AS admins,"
        " u.username FROM users u WHERE u.username = ? GROUP BY u.username",
        ("ada",),  # COLLATE NOCASE: citext
    )
    assert row == {"count(*)": 1, "max(id)": 7, "ada": 1, "admins": 1, "username": "Ada"}
    assert type(row) is dict
    artifacts = await pg.fetchone("SELECT json_group_array(json_array(id, username)) AS a FROM users WHERE id = 0")
    assert artifacts == {"a": "[]"}
    names = await pg.fetchall("SELECT username FROM users ORDER BY username")
    assert [name["username"] for name in names] == ["Ada", "bob"]  # NOCASE order, not byte order


async def test_constraint_violations_are_integrity_errors_and_roll_back(pg):
    async def work(tx):
        await tx.execute("INSERT INTO users (username, name, created_at) VALUES ('carol', 'C', 'now')")
        await tx.execute("INSERT INTO users (username, name, created_at) VALUES ('CAROL', 'C', 'now')")

    with pytest.raises(sqlite3.IntegrityError) as caught:
        await pg.write(work)
    assert isinstance(caught.value, ConstraintViolation)
    assert await pg.fetchall("SELECT id FROM users") == []


async def test_insert_or_replace_and_or_ignore(pg):
    async def work(tx):
        for value in ("a", "b"):
            await tx.execute(
                "INSERT OR REPLACE INTO instance_settings (key, value) VALUES ('external_url', ?)", (value,)
            )
        await tx.execute("INSERT INTO fixture_loads (sha256, name, loaded_at) VALUES ('s', 'one', 'now')")
        return await tx.execute(
            "INSERT OR IGNORE INTO fixture_loads (sha256, name, loaded_at) VALUES ('s', 'two', 'x')"
        )

    assert await pg.write(work) == 0
    assert await pg.fetchall("SELECT value FROM instance_settings") == [{"value": "b"}]
    assert await pg.fetchall("SELECT name FROM fixture_loads") == [{"name": "one"}]


async def test_a_cancelled_caller_leaves_no_half_transaction(pg):
    started = asyncio.Event()

    async def work(tx):
        await tx.execute("INSERT INTO fixture_loads (sha256, name, loaded_at) VALUES ('c', 'first', 'now')")
        started.set()
        await asyncio.sleep(0.2)
        await tx.execute("INSERT INTO fixture_loads (sha256, name, loaded_at) VALUES ('d', 'second', 'now')")

    task = asyncio.create_task(pg.write(work))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)  # the shielded transaction goes on and commits whole
    assert await pg.fetchall("SELECT name FROM fixture_loads ORDER BY name") == [{"name": "first"}, {"name": "second"}]


@pytest.fixture
def tiny_disk(tmp_path: Path, postgres_server):
    """A 1 MiB tmpfs the server's user owns, for a tablespace that fills up (needs root, as CI has)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("filling a disk needs root to mount a small tmpfs")
    # the server's user must reach it: the search bit on tmp_path and up to pytest's root (which another
    # pytest session starting meanwhile makes 0700 again; tests/realservers.py sets it the same way)
    for directory in [tmp_path, *tmp_path.parents]:
        directory.chmod(directory.stat().st_mode | 0o001)
        if directory.name.startswith("pytest-of-"):
            break
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)], check=False)
    if done.returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        account = pwd.getpwnam(postgres_server.user)
        os.chown(mountpoint, account.pw_uid, account.pw_gid)
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


async def test_a_full_disk_is_database_full_and_changes_nothing(pg, postgres_dsn, tiny_disk):
    conn = await asyncpg.connect(postgres_dsn)
    name = f"tiny_{secrets.token_hex(4)}"
    await conn.execute(f"CREATE TABLESPACE {name} LOCATION '{tiny_disk}'")
    await conn.execute(f"ALTER TABLE fixture_loads SET TABLESPACE {name}")
    try:

        async def fill(tx):
            await tx.execute("INSERT INTO instance_settings (key, value) VALUES ('k', 'v')")
            for index in range(400):  # 400 x 8 KB of random hex, past 1 MiB
                await tx.execute(
                    "INSERT INTO fixture_loads (sha256, name, loaded_at) VALUES (?, ?, 'now')",
                    (str(index), secrets.token_hex(4096)),
                )

        with pytest.raises(DatabaseFull):
            await pg.write(fill)
        assert await pg.fetchall("SELECT key FROM instance_settings") == []  # rolled back whole
        await pg.write(lambda tx: tx.execute("INSERT INTO instance_settings (key, value) VALUES ('k', 'v')"))
        assert await pg.fetchall("SELECT key FROM instance_settings") == [{"key": "k"}]
    finally:
        await conn.execute("ALTER TABLE fixture_loads SET TABLESPACE pg_default")
        await conn.execute(f"DROP TABLESPACE {name}")
        await conn.close()


async def test_every_statement_of_jobsvc_translates_and_prepares(
    monkeypatch, aiohttp_client, tmp_path, pg, postgres_dsn
):
    """Every statement written in jobsvc/ (tests/sqlsites.py): the constant ones as they stand, the ones
    put together at run time as an in-process SQLite run executed them (tests/pgscenario.py), which must
    reach each; every one PREPAREd on the migrated PostgreSQL schema: it parses, every name resolves and
    every type checks."""
    recorded = await record_statements(monkeypatch, aiohttp_client, tmp_path)
    found = sites()
    missed = [site.where for site in found if site.whole is None and not site.ran(set(recorded))]
    assert missed == [], f"statements the scenario never ran (add a step to tests/pgscenario.py): {missed}"
    statements = dict(recorded)
    for site in found:
        if site.whole is not None:
            statements.setdefault(site.whole, "insert" if site.whole.lstrip().startswith("INSERT") else "fetch")
    failures = []
    conn = await asyncpg.connect(postgres_dsn)  # the database pg migrated
    try:
        for sql, method in sorted(statements.items()):
            try:
                translation = pg.translator.translate(sql, method == "insert")
                await conn.prepare(translation.sql)
            except Exception as exc:  # every failure, not just the first
                failures.append(f"{type(exc).__name__}: {exc}\n  {sql.strip()[:300]}")
    finally:
        await conn.close()
    assert failures == [], "\n".join(failures)
    assert len(statements) > 100


async def test_two_stores_share_leases_and_rate_counts(postgres_dsn):
    """What processes on one database share through it (tests/test_shared_state.py over SQLite): of
    eight racing takers one holds a lease; requests counted from two stores add up."""
    stores = [PostgresDatabase(postgres_dsn) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        repos = [Repository(store) for store in stores]
        takers = [Lease(repos[i % 2], "sweeper", 60, shared=True, holder=f"p{i}") for i in range(8)]
        taken = await asyncio.gather(*(taker.take() for taker in takers))
        assert taken.count(True) == 1
        assert await takers[taken.index(True)].take()  # the holder renews
        limiters = [SharedRateLimiter(repo, 30, clock=lambda: 120.0) for repo in repos]
        waits = await asyncio.gather(*(limiters[i % 2].hit("jobs_index", 7) for i in range(40)))
        assert waits.count(None) == 30 and set(waits) == {None, 60}
        assert await stores[0].fetchall("SELECT key, minute, count FROM rate_counts") == [
            {"key": "jobs_index:7", "minute": 2, "count": 40}
        ]
    finally:
        for store in stores:
            await store.close()
