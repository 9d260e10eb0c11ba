"""Which database a ``--database-url`` names: SQLite at a path, or a PostgreSQL server.

Pure parsing, shared by the settings (a bad URL is a one-line usage error) and by
jobsvc.storage.backends (which opens what it names).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class DatabaseUrl:
    kind: str  # "sqlite" or "postgresql"
    path: Path | None = None  # sqlite: the database file
    dsn: str | None = None  # postgresql: the URL as libpq and asyncpg take it


def parse_database_url(text: str) -> DatabaseUrl | None:
    """None for an empty text (the default: SQLite under the data directory); raises ValueError otherwise.

    ``sqlite:///PATH`` as SQLAlchemy writes it: ``sqlite:///var/x.db`` is relative, ``sqlite:////srv/x.db``
    absolute; ``postgresql://...`` or ``postgres://...`` as libpq takes it."""
    text = text.strip()
    if not text:
        return None
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(f"not a database URL: {redacted(text)!r} (sqlite:///PATH or postgresql://...)")
    if scheme == "sqlite":
        if not rest.startswith("/"):
            raise ValueError(f"a SQLite URL has no host: sqlite:///PATH, not {text!r}")
        path = unquote(rest[1:].split("?", 1)[0])
        if not path:
            raise ValueError("a SQLite URL needs a path: sqlite:///PATH")
        return DatabaseUrl("sqlite", path=Path(path))
    if scheme in POSTGRES_SCHEMES:
        return DatabaseUrl("postgresql", dsn=text)
    raise ValueError(f"unknown database URL scheme {scheme!r}: use sqlite:///PATH or postgresql://...")


def redacted(text: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(text)
    if parts.password is None:
        return text
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
