"""``jobsvc check``: what is wrong with a data directory, found without changing anything in it.

The findings, each a kind and one line:

- ``integrity``: SQLite's ``PRAGMA integrity_check`` (a damaged page or index, a file that is not a
  database);
- ``foreign-key``: ``PRAGMA foreign_key_check``, a row pointing at a row that is gone;
- ``missing``: an artifact or log row whose blob is not in the store;
- ``size``: a blob whose size is not the one its row records;
- ``orphan``: a blob under ``artifacts/`` that no row points at (what the sweeper would remove), and, in
  the directory store, a log file under ``traces/`` of a job that does not exist.

The database is opened read-only, and the directory store is read as it is (starting it would tidy
``tmp/``). A database without a write-ahead log beside it (closed cleanly) is read as immutable, so not
even SQLite's ``-wal`` and ``-shm`` files appear; with one (a server running, or one that was killed),
the log is read too, as it holds committed rows. Run it on a stopped server or a copy: while a server
runs, an upload between its file and its row shows as an orphan.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import pathname2url

import aiosqlite

from jobsvc.storage.blobs import BlobStore, StoreError
from jobsvc.storage.store import Store


@dataclass(frozen=True)
class Finding:
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    rows: int = 0  # artifact and log rows looked at
    blobs: int = 0  # blobs listed in the store

    def add(self, kind: str, detail: str) -> None:
        self.findings.append(Finding(kind, detail))


async def check(db_path: Path, store: BlobStore) -> Report:
    """Every finding about the database at ``db_path`` and the blobs of ``store`` (opened, if it must be)."""
    report = Report()
    closed = not db_path.with_name(db_path.name + "-wal").exists()
    try:
        uri = f"file:{pathname2url(str(db_path))}?mode=ro" + ("&immutable=1" if closed else "")
        conn = await aiosqlite.connect(uri, uri=True)
    except sqlite3.Error as exc:
        report.add("integrity", f"{db_path}: cannot open: {exc}")
        return report
    try:
        if not await _integrity(conn, report):
            return report  # a database that cannot be read says nothing true about its rows
        await _foreign_keys(conn, report)
        keys = await _rows(conn, store, report)
        await _orphans(conn, store, keys, report)
    finally:
        await conn.close()
    return report


async def _integrity(conn: aiosqlite.Connection, report: Report) -> bool:
    try:
        rows = await conn.execute_fetchall("PRAGMA integrity_check")
    except sqlite3.DatabaseError as exc:
        report.add("integrity", str(exc))
        return False
    problems = [row[0] for row in rows if row[0] != "ok"]
    for problem in problems:
        report.add("integrity", problem)
    return not problems


async def _foreign_keys(conn: aiosqlite.Connection, report: Report) -> None:
    for table, rowid, parent, _ in await conn.execute_fetchall("PRAGMA foreign_key_check"):
        report.add("foreign-key", f"{table} row {rowid} points at a missing {parent} row")


async def _rows(conn: aiosqlite.Connection, store: BlobStore, report: Report) -> set[str]:
    """Each artifact and log row against its blob; returns the keys the rows point at."""
    keys: set[str] = set()
    rows = await conn.execute_fetchall("SELECT job_id, file_type, size, store_key FROM job_artifacts ORDER BY id")
    for job_id, file_type, size, key in rows:
        report.rows += 1
        keys.add(key)
        what = f"job {job_id}'s {file_type}"
        try:
            actual = await store.size_of(key)
        except StoreError as exc:
            report.add("missing", f"{what}: {exc}")
            continue
        if actual is None:
            report.add("missing", f"{key}: the file of {what} ({size} bytes) is not in the store")
        elif actual != size:
            report.add("size", f"{key}: {what} is recorded as {size} bytes, the file has {actual}")
    return keys


async def _orphans(conn: aiosqlite.Connection, store: BlobStore, keys: set[str], report: Report) -> None:
    async for blob in store.list_artifacts():
        report.blobs += 1
        if blob.key not in keys:
            report.add("orphan", f"{blob.key}: no row points at it")
    if isinstance(store, Store):
        jobs = {row[0] for row in await conn.execute_fetchall("SELECT id FROM jobs")}
        for job_id, key in await asyncio.to_thread(store.trace_files):
            report.blobs += 1
            if job_id not in jobs:
                report.add("orphan", f"{key}: the log of job {job_id}, which does not exist")
