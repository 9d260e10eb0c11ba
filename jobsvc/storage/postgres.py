"""PostgreSQL access with the interface of jobsvc.storage.db.Database: same methods, same meaning.

The statements stay in SQLite's dialect; jobsvc.storage.pgsql translates each once (cached by
text). Rows come back as plain dicts with SQLite's keys and values: booleans as 0/1, integral
NUMERICs (``sum`` of BIGINTs) as int; nothing of asyncpg leaves this module.

Writes are serialized as SQLite's ``BEGIN IMMEDIATE`` serializes them, across processes: each
write transaction (READ COMMITTED) first takes one transaction-scoped advisory lock,
``pg_advisory_xact_lock``, held until COMMIT or ROLLBACK. Chosen over SERIALIZABLE with retries:

- it is exactly the contract the services were written against: a transaction reads, decides
  and writes with no other writer in between (fifty retries of one job make one new job, as
  jobsvc.services.actions promises), and it holds for statements PostgreSQL's SSI would not
  protect the same way, such as reading a row count and then inserting;
- under contention SERIALIZABLE aborts and reruns work functions (their side effects, like
  generated tokens, happen again) and a bounded retry can still give up; the lock never does;
- jobsvc's write transactions are short and few; throughput is what SQLite's single writer
  gives, and reads, on the pool, never wait for the lock (MVCC).

Each statement in READ COMMITTED takes a fresh snapshot, and the lock is taken before the first
statement that reads, so a transaction sees every write committed before it got the lock. An
asyncio lock in front keeps one process's writers from holding many pool connections while they
wait. A deadlock or serialization failure (40P01, 40001: neither should happen with one lock,
but a DBA's own transactions might cause one) reruns the work, a few times, after a jittered
pause. A full disk (53100) is storage/db.py's ``DatabaseFull``; a constraint violation is a
``ConstraintViolation``, which is a ``sqlite3.IntegrityError`` so callers catch one type.

Migrations (schema.postgres.sql) run at ``open()`` under a session advisory lock, so two
processes starting together migrate once; applied versions are rows of ``schema_migrations``.

Explicit ids (fixtures) go into identity columns as given; before the next generated id of that
table, and at the latest before COMMIT, the id sequence is moved past the highest id.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg

from jobsvc.domain.dburl import redacted
from jobsvc.domain.timefmt import now_iso
from jobsvc.storage.db import DatabaseFull, migrations, schema_path
from jobsvc.storage.pgsql import Column, Schema, Translation, Translator
from jobsvc.storage.rows import Row

log = logging.getLogger(__name__)

T = TypeVar("T")
Params = Sequence[Any] | dict[str, Any]

LOCK_CLASS = 0x6A6F6273  # "jobs": the first key of jobsvc's advisory locks
WRITE_LOCK = 1
MIGRATION_LOCK = 2
RETRIES = 5  # reruns of a work function after a deadlock or a serialization failure
RETRY_PAUSE = 0.02  # seconds, doubled each time, jittered
STATEMENTS_PER_CONNECTION = 1024

_INTEGER = frozenset({"int2", "int4", "int8"})
_REAL = frozenset({"float4", "float8"})
_TEXT = frozenset({"text", "varchar", "bpchar", "citext", "name", "json", "jsonb"})
_RETRYABLE = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.InvalidCachedStatementError,  # a migration changed a table under a prepared statement
)


class ConstraintViolation(sqlite3.IntegrityError):
    """A UNIQUE, NOT NULL, CHECK or foreign-key violation (SQLSTATE class 23), as SQLite reports it."""


class DatabaseUnavailable(OSError):
    """The server cannot be reached, refuses the login, or the schema cannot be migrated."""


def _value(value: Any) -> Any:
    if value is True or value is False:
        return int(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _row(record: asyncpg.Record, renames: dict[str, str] | Any) -> dict[str, Any]:
    if renames:
        return {renames.get(key, key): _value(value) for key, value in record.items()}
    return {key: _value(value) for key, value in record.items()}


def _coerce(kind: str, value: Any) -> Any:
    """SQLite's type affinity for a parameter PostgreSQL wants typed: 5 for a TEXT column is '5', and so on."""
    if value is None:
        return None
    if kind in _INTEGER:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
    elif kind in _TEXT:
        if isinstance(value, bool):
            return str(int(value))
        if isinstance(value, int | float):
            return str(value)
    elif kind in _REAL and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    elif kind == "bool" and isinstance(value, int):
        return bool(value)
    return value


def _rowcount(status: str) -> int:
    """The row count of "INSERT 0 3", "UPDATE 2", "DELETE 1"; -1 for a statement without one (as sqlite3)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


async def _run(
    conn: Any, translation: Translation, params: Params, kinds: dict[str, tuple[str, ...]], *, rows: bool
) -> tuple[list[asyncpg.Record], int]:
    """Run a translated statement: its rows (``rows``) or its row count.

    asyncpg wants each parameter in the type PostgreSQL inferred for it; the types of a statement are
    learnt once (a PREPARE) and kept in ``kinds``, and the values coerced as SQLite's affinity would."""
    values = translation.bind(params)
    if values:
        known = kinds.get(translation.sql)
        if known is None:
            statement = await conn.prepare(translation.sql)
            known = kinds[translation.sql] = tuple(parameter.name for parameter in statement.get_parameters())
        values = [_coerce(kind, value) for kind, value in zip(known, values, strict=True)]
    try:
        if rows:
            return await conn.fetch(translation.sql, *values), -1
        return [], _rowcount(await conn.execute(translation.sql, *values))
    except asyncpg.exceptions.IntegrityConstraintViolationError as exc:
        raise ConstraintViolation(str(exc)) from exc


async def load_schema(conn: Any) -> Schema:
    """The tables, columns, primary keys and id sequences of the current schema, for the translator."""
    tables: dict[str, dict[str, Column]] = {}
    for row in await conn.fetch(
        """SELECT c.relname AS tbl, a.attname AS col, format_type(a.atttypid, a.atttypmod) AS type,
                  a.attnotnull AS not_null
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p', 'v') AND n.nspname = current_schema() AND a.attnum > 0
              AND NOT a.attisdropped"""
    ):
        tables.setdefault(row["tbl"], {})[row["col"]] = Column(row["type"], row["not_null"])
    keys: dict[str, tuple[str, ...]] = {}
    for row in await conn.fetch(
        """SELECT c.relname AS tbl, array_agg(a.attname ORDER BY k.position) AS cols
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
            WHERE i.indisprimary AND n.nspname = current_schema()
            GROUP BY c.relname"""
    ):
        keys[row["tbl"]] = tuple(row["cols"])
    sequences: dict[str, str] = {}
    for row in await conn.fetch(
        """SELECT c.relname AS tbl, pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), 'id') AS seq
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'id' AND NOT a.attisdropped
            WHERE c.relkind = 'r' AND n.nspname = current_schema()"""
    ):
        if row["seq"] is not None:
            sequences[row["tbl"]] = row["seq"]
    return Schema(tables, keys, sequences)


async def migrate(conn: Any, text: str) -> int:
    """Apply the migrations of schema.postgres.sql not in schema_migrations; returns the version reached.

    Under a session advisory lock: a second process waits, then finds them applied. Each migration and
    its row commit together, so a crash part-way leaves the database at the previous version."""
    await conn.execute("SELECT pg_advisory_lock($1, $2)", LOCK_CLASS, MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        applied = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        current = max(applied, default=0)
        for version, script in migrations(text):
            if version in applied:
                continue
            log.info("applying PostgreSQL schema migration %d", version)
            async with conn.transaction():
                await conn.execute(script)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", version, now_iso()
                )
            current = max(current, version)
        return current
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_CLASS, MIGRATION_LOCK)


class PgTx:
    """The statements of one write transaction; only PostgresDatabase.write makes one."""

    def __init__(self, conn: Any, translator: Translator, kinds: dict[str, tuple[str, ...]]):
        self._conn = conn
        self._translator = translator
        self._kinds = kinds
        self._explicit_ids: set[str] = set()  # tables whose id sequence may be behind an explicit id

    async def _statement(self, sql: str, params: Params, *, rows: bool, returning_id: bool = False):
        translation = self._translator.translate(sql, returning_id)
        table = translation.table
        if table in self._explicit_ids and not translation.explicit_id:
            await self._advance(table)
        found, count = await _run(self._conn, translation, params, self._kinds, rows=rows)
        if translation.explicit_id and table is not None and table in self._translator.schema.sequences:
            self._explicit_ids.add(table)
        return translation, found, count

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the row count it changed."""
        _, _, count = await self._statement(sql, params, rows=False)
        return count

    async def insert(self, sql: str, params: Params = ()) -> int:
        """Run an INSERT; returns the new row id (0 when INSERT OR IGNORE inserted nothing)."""
        translation, rows, _ = await self._statement(sql, params, rows=True, returning_id=True)
        if not translation.returns_id:
            raise TypeError(f"insert() needs an INSERT into a table with an id column: {sql!r}")
        return rows[0][0] if rows else 0

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        for params in rows:  # one prepared statement, one round trip per row
            await self._statement(sql, params, rows=False)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        translation, rows, _ = await self._statement(sql, params, rows=True)
        return [_row(record, translation.renames) for record in rows]

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def _advance(self, table: str) -> None:
        """Move the table's id sequence past its highest id (it never moves back: ids are not reused)."""
        self._explicit_ids.discard(table)
        sequence = self._translator.schema.sequences[table]
        await self._conn.execute(
            f"""SELECT setval($1::regclass, GREATEST((SELECT max(id) FROM "{table}"),
                                                    pg_sequence_last_value($1::regclass), 1))""",
            sequence,
        )

    async def finish(self) -> None:
        for table in sorted(self._explicit_ids):
            await self._advance(table)


class PostgresDatabase:
    """jobsvc's database on a PostgreSQL server; the interface of jobsvc.storage.db.Database."""

    shared = True  # several processes may use one database: rate counts and leases live in it

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10):
        self.dsn = dsn
        self.min_size, self.max_size = min_size, max_size
        self._pool: asyncpg.Pool | None = None
        self._translator: Translator | None = None
        self._kinds: dict[str, tuple[str, ...]] = {}  # translated SQL -> its parameters' types
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PostgresDatabase({redacted(self.dsn)!r})"

    @property
    def translator(self) -> Translator:
        assert self._translator is not None, "database is not open"
        return self._translator

    async def open(self) -> None:
        try:
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                statement_cache_size=STATEMENTS_PER_CONNECTION,
                server_settings={"standard_conforming_strings": "on", "application_name": "jobsvc"},
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailable(f"cannot connect to {redacted(self.dsn)}: {exc}") from exc
        try:
            async with pool.acquire() as conn:
                await migrate(conn, schema_path("schema.postgres.sql").read_text(encoding="utf-8"))
                self._translator = Translator(await load_schema(conn))
        except asyncpg.PostgresError as exc:
            await pool.close()
            raise DatabaseUnavailable(f"cannot migrate {redacted(self.dsn)}: {exc}") from exc
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        self._pool = None

    def data_version(self) -> None:
        """Other processes write to the same database unseen: no number can say that nothing changed."""
        return None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        assert self._pool is not None, "database is not open"
        translation = self.translator.translate(sql)
        async with self._pool.acquire() as conn:
            rows, _ = await _run(conn, translation, params, self._kinds, rows=True)
        return [_row(record, translation.renames) for record in rows]

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def write(self, work: Callable[[PgTx], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction, serialized with every other writer; commit unless it raises."""
        return await asyncio.shield(self._write(work))

    async def _write(self, work: Callable[[PgTx], Awaitable[T]]) -> T:
        assert self._pool is not None, "database is not open"
        async with self._lock, self._pool.acquire() as conn:
            for attempt in range(RETRIES + 1):
                try:
                    return await self._transaction(conn, work)
                except _RETRYABLE as exc:
                    if attempt == RETRIES:
                        raise
                    pause = RETRY_PAUSE * 2**attempt * (0.5 + random.random())  # noqa: S311 - jitter
                    log.warning("write transaction rolled back (%s); running it again in %.3fs", exc, pause)
                    await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    async def _transaction(self, conn: Any, work: Callable[[PgTx], Awaitable[T]]) -> T:
        try:
            # READ COMMITTED whatever the server's default: each statement sees what committed before it
            async with conn.transaction(isolation="read_committed"):
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_CLASS, WRITE_LOCK)
                tx = PgTx(conn, self.translator, self._kinds)
                result = await work(tx)
                await tx.finish()
        except asyncpg.exceptions.DiskFullError as exc:
            log.warning("database write refused, the server's disk is full: %s", exc)
            raise DatabaseFull(str(exc)) from exc
        return result
