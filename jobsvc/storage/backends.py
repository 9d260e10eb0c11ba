"""The database a ``--database-url`` names: SQLite (the default, under the data directory) or PostgreSQL.

Both backends have one interface (jobsvc.storage.db.Database's): ``open``, ``close``, ``fetchall``,
``fetchone`` and ``write``. asyncpg is imported only when a PostgreSQL URL is given, so the SQLite
service needs nothing more than it did.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from jobsvc.domain.dburl import parse_database_url
from jobsvc.storage.db import Database

if TYPE_CHECKING:
    from jobsvc.storage.postgres import PostgresDatabase

DEFAULT_SQLITE_NAME = "jobsvc.sqlite3"


def database_for(url: str | None, data_dir: Path) -> Database | PostgresDatabase:
    """The backend for ``url``, not yet open; raises ValueError for a URL of no known kind."""
    parsed = parse_database_url(url or "")
    if parsed is None:
        return Database(data_dir / DEFAULT_SQLITE_NAME)
    if parsed.kind == "sqlite":
        assert parsed.path is not None
        return Database(parsed.path)
    try:
        from jobsvc.storage.postgres import PostgresDatabase
    except ImportError as exc:  # asyncpg is the optional "postgres" extra
        raise ValueError(f"a PostgreSQL database needs asyncpg: pip install 'jobsvc[postgres]' ({exc})") from None
    assert parsed.dsn is not None
    return PostgresDatabase(parsed.dsn)


async def open_database(url: str | None, data_dir: Path) -> Database | PostgresDatabase:
    """The backend for ``url``, opened: migrated and ready."""
    db = database_for(url, data_dir)
    await db.open()
    return db
