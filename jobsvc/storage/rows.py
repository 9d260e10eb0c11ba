"""What the storage layer hands out: rows as plain mappings, and one page type for every list.

Outside a backend, a row is a ``dict`` of column name to value (never a driver's row type),
so the layers above work the same on every database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

Row = Mapping[str, Any]
T = TypeVar("T")


class Backend(Protocol):
    """A database: SQLite (jobsvc.storage.db) or PostgreSQL (jobsvc.storage.postgres).

    ``write(work)`` runs ``work(tx)`` in one transaction that behaves as if writers were serialized,
    with the backend's own locking; ``shared`` says whether other processes may use the database too.
    """

    shared: bool

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None: ...

    async def write(self, work: Callable[[Any], Awaitable[T]]) -> T: ...

    def data_version(self) -> int | None:
        """A number that stays the same for as long as nothing in the database changed, read without a round
        trip; None when the backend cannot tell (then nothing read from it may be cached across requests)."""
        ...


@dataclass(frozen=True)
class Page:
    """One page of a list: its rows, whether another page follows, and the total when it was counted."""

    rows: list[Row]
    has_next: bool = False
    total: int | None = field(default=None)
