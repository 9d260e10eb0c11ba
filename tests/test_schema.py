"""schema.sql is applied once per migration and versioned with PRAGMA user_version."""

import sqlite3

import pytest

from jobsvc.storage.db import Database, migrations, schema_path


def test_migrations_are_numbered_in_order():
    found = migrations(schema_path().read_text())
    assert [v for v, _ in found] == list(range(1, len(found) + 1))


def test_bad_numbering_is_refused():
    with pytest.raises(ValueError):
        migrations("-- migration: 2\nSELECT 1;\n-- migration: 1\nSELECT 1;\n")


async def test_open_twice_does_not_reapply(tmp_path):
    for _ in range(2):
        db = Database(tmp_path / "j.sqlite3")
        await db.open()
        await db.close()
    conn = sqlite3.connect(tmp_path / "j.sqlite3")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations(schema_path().read_text()))
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_a_new_migration_upgrades_an_existing_database(tmp_path, monkeypatch):
    db = Database(tmp_path / "j.sqlite3")
    await db.open()
    await db.close()
    current = schema_path().read_text()
    version = len(migrations(current)) + 1
    upgraded = current + f"\n-- migration: {version}\nCREATE TABLE probe (id INTEGER PRIMARY KEY);\n"
    monkeypatch.setattr("jobsvc.storage.db.schema_path", lambda: _Text(upgraded))
    db = Database(tmp_path / "j.sqlite3")
    await db.open()
    assert (await db.fetchone("PRAGMA user_version"))["user_version"] == version
    assert await db.fetchall("SELECT * FROM probe") == []
    await db.close()


class _Text:
    def __init__(self, text):
        self.text = text

    def read_text(self, encoding=None):
        return self.text


async def test_failed_write_rolls_back(tmp_path):
    db = Database(tmp_path / "j.sqlite3")
    await db.open()

    async def work(tx):
        await tx.execute("INSERT INTO instance_settings (key, value) VALUES ('a', 'b')")
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        await db.write(work)
    assert await db.fetchall("SELECT * FROM instance_settings") == []

    async def ok(tx):
        await tx.execute("INSERT INTO instance_settings (key, value) VALUES ('a', 'b')")

    await db.write(ok)
    assert len(await db.fetchall("SELECT * FROM instance_settings")) == 1
    await db.close()


async def test_concurrent_writers_are_serialized(tmp_path):
    import asyncio

    db = Database(tmp_path / "j.sqlite3")
    await db.open()

    async def bump(tx):
        row = await tx.fetchone("SELECT value FROM instance_settings WHERE key = 'n'")
        await asyncio.sleep(0)
        value = int(row["value"]) + 1 if row else 1
        await tx.execute("INSERT OR REPLACE INTO instance_settings (key, value) VALUES ('n', ?)", (str(value),))

    await asyncio.gather(*(db.write(bump) for _ in range(50)))
    assert (await db.fetchone("SELECT value FROM instance_settings WHERE key = 'n'"))["value"] == "50"
    await db.close()
