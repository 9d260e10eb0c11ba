"""What a statement group runs on: a write transaction, or (reads only) the backend's reader."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from jobsvc.storage.rows import Row

Params = Sequence[Any] | dict[str, Any]


class Reader(Protocol):
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...


class Conn(Reader, Protocol):
    async def execute(self, sql: str, params: Params = ()) -> int: ...

    async def insert(self, sql: str, params: Params = ()) -> int: ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


class Group:
    """A group of statements over one connection or transaction."""

    def __init__(self, conn: Any):
        self.c: Conn = conn
