"""SQLite access: one serialized write path, a separate connection for reads.

aiosqlite runs each connection on its own thread and shares one transaction
per connection, so two coroutines writing through one connection would mix
their transactions. Writers therefore go through ``Database.write(work)``:
it holds an asyncio lock from ``BEGIN IMMEDIATE`` to ``COMMIT``/``ROLLBACK``
and is shielded from cancellation, so a client that disconnects never leaves
half a transaction. Reads use their own connection; WAL gives them a
consistent snapshot beside a writer.

A write that fails because the disk is full (SQLITE_FULL, or a disk I/O
error while the filesystem has next to no room left) is rolled back and
raised as ``DatabaseFull``, which the error middleware answers with 507.
Nothing of the transaction stays behind, and the next write works again as
soon as there is room; reads are not affected.

Beside the database lies a small ballast file (``<db>-reserve``, BALLAST
bytes, made when there is plenty of room). The first write that finds the
disk full removes it and runs once more, so the state changes and deletes
that free space can still commit when something else filled the disk; it is
made again once the room is back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import site
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from jobsvc.storage.rows import Row

log = logging.getLogger(__name__)

T = TypeVar("T")

# below this much free space, a disk I/O error of SQLite is taken for ENOSPC (short writes of the WAL or
# of the shared-memory index surface as SQLITE_IOERR_WRITE / _SHMSIZE rather than SQLITE_FULL)
NEARLY_FULL = 8 * 1024 * 1024
BALLAST = 2 * 1024 * 1024
BALLAST_ROOM = 4 * BALLAST  # the ballast is (re)made only with this much free beside it


class DatabaseFull(Exception):
    """A write transaction failed for want of disk space; it was rolled back and changed nothing."""


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def is_disk_full(exc: BaseException, path: Path) -> bool:
    """Whether a sqlite3 error means "no room": SQLITE_FULL, or an I/O error on a (nearly) full disk."""
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "database or disk is full" in str(exc)
    primary = code & 0xFF
    if primary == sqlite3.SQLITE_FULL:
        return True
    if primary == sqlite3.SQLITE_IOERR:
        try:
            return free_bytes(path) < NEARLY_FULL
        except OSError:
            return False
    return False


_MIGRATION = re.compile(r"^-- migration: (\d+)\s*$", re.MULTILINE)


def schema_path(name: str = "schema.sql") -> Path:
    """schema.sql (or schema.postgres.sql) beside the package (source checkout, editable install) or under
    share/jobsvc: the prefix's, the user's, or beside the package (``pip install --target``, jobsvc.pyz)."""
    beside = Path(__file__).resolve().parents[2]
    candidates = [
        beside / name,
        beside / "share" / "jobsvc" / name,
        Path(sys.prefix) / "share" / "jobsvc" / name,
        Path(site.getuserbase()) / "share" / "jobsvc" / name,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name} not found; looked in " + ", ".join(map(str, candidates)))


def migrations(text: str) -> list[tuple[int, str]]:
    """Split schema.sql into (version, script) pairs, in order."""
    marks = list(_MIGRATION.finditer(text))
    result = []
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(text)
        result.append((int(mark.group(1)), text[mark.end() : end]))
    versions = [version for version, _ in result]
    if versions != sorted(set(versions)):
        raise ValueError("schema.sql: migration numbers must increase")
    return result


async def migrate(conn: aiosqlite.Connection, text: str) -> int:
    """Apply the migrations newer than PRAGMA user_version; returns the version reached.

    Each migration and its user_version bump run in one transaction, so a
    crash part-way leaves the database at the previous version.
    """
    rows = await conn.execute_fetchall("PRAGMA user_version")
    current = next(iter(rows))["user_version"]
    for version, script in migrations(text):
        if version <= current:
            continue
        log.info("applying schema migration %d", version)
        await conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
        current = version
    return current


def dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> dict[str, Any]:
    """The row factory of both connections: rows leave this module as plain dicts."""
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


class Tx:
    """The statements of one write transaction; only Database.write makes one."""

    def __init__(self, conn: aiosqlite.Connection):
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one statement; returns the row count it changed."""
        cursor = await self._conn.execute(sql, params)
        count = cursor.rowcount
        await cursor.close()
        return count

    async def insert(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run an INSERT; returns the new row id."""
        cursor = await self._conn.execute(sql, params)
        rowid = cursor.lastrowid
        await cursor.close()
        assert rowid is not None
        return rowid

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        return cast(list[Row], list(await self._conn.execute_fetchall(sql, params)))

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


class Database:
    shared = False  # one process: what it must share with no one (rate counts, leases) stays in memory

    def __init__(self, path: Path):
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._probe: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self.ballast = path.with_name(path.name + "-reserve")

    def _make_ballast(self) -> None:
        """Allocate the ballast file (really: posix_fallocate), if it is missing and there is room."""
        if self.ballast.exists():
            return
        try:
            if free_bytes(self.path.parent) < BALLAST_ROOM + BALLAST:
                return
            temp = self.ballast.with_name(self.ballast.name + ".part")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, BALLAST)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.ballast)
        except OSError as exc:
            log.warning("could not make the database's ballast file: %s", exc)

    def _drop_ballast(self) -> bool:
        try:
            self.ballast.unlink()
        except FileNotFoundError:
            return False
        log.warning("the disk is full: removed the database's ballast file to let writes through")
        return True

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            writer.row_factory = dict_row  # type: ignore[assignment]
            await writer.execute("PRAGMA journal_mode = WAL")
            await writer.execute("PRAGMA synchronous = FULL")
            await writer.execute("PRAGMA foreign_keys = ON")
            await writer.execute("PRAGMA busy_timeout = 5000")
            text = schema_path().read_text(encoding="utf-8")
            await migrate(writer, text)
            reader = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        except BaseException:
            await writer.close()
            raise
        # PRAGMA data_version on a connection of its own, read on the caller's thread: a few µs, no hop
        probe = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        self._make_ballast()
        reader.row_factory = dict_row  # type: ignore[assignment]
        await reader.execute("PRAGMA query_only = 1")
        await reader.execute("PRAGMA busy_timeout = 5000")
        await reader.execute("PRAGMA cache_size = -32000")
        await reader.execute("PRAGMA mmap_size = 268435456")
        probe.execute("PRAGMA query_only = 1")
        self._writer, self._reader, self._probe = writer, reader, probe

    async def close(self) -> None:
        """Close the connections, once the write in flight (if any) has committed or rolled back."""
        async with self._lock:
            if self._probe is not None:
                self._probe.close()
            for conn in (self._reader, self._writer):
                if conn is not None:
                    await conn.close()
            self._reader = self._writer = self._probe = None

    def data_version(self) -> int | None:
        """A number that changes whenever a commit (of this process or any other) has changed the database
        since it was last read, SQLite's ``PRAGMA data_version`` on a connection of its own; None when closed.

        What was read after this was read is at least as new as the state it names, so a value cached with
        it may be served for as long as ``data_version()`` returns the same number."""
        if self._probe is None:
            return None
        return cast(int, self._probe.execute("PRAGMA data_version").fetchone()[0])

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        assert self._reader is not None, "database is not open"
        return cast(list[Row], list(await self._reader.execute_fetchall(sql, params)))

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``work`` in one BEGIN IMMEDIATE transaction; commit unless it raises."""
        return await asyncio.shield(self._write(work))

    async def _write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        assert self._writer is not None, "database is not open"
        conn = self._writer
        async with self._lock:
            try:
                result = await self._transaction(conn, work)
            except DatabaseFull:
                if not self._drop_ballast():
                    raise
                result = await self._transaction(conn, work)  # rolled back: ``work`` runs afresh
            if not self.ballast.exists():
                self._make_ballast()
            return result

    async def _transaction(self, conn: aiosqlite.Connection, work: Callable[[Tx], Awaitable[T]]) -> T:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            result = await work(Tx(conn))
            await conn.execute("COMMIT")
        except BaseException as exc:
            await self._rollback(conn)
            if is_disk_full(exc, self.path.parent):
                log.warning("database write refused, the disk is full: %s", exc)
                raise DatabaseFull(str(exc)) from exc
            raise
        return result

    @staticmethod
    async def _rollback(conn: aiosqlite.Connection) -> None:
        """After a failed statement or COMMIT (SQLITE_FULL may have rolled back already by itself)."""
        if not conn.in_transaction:
            return
        try:
            await conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # the original error is the one to report
            log.error("ROLLBACK failed: %s", exc)
