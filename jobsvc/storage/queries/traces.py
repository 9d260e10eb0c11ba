"""Statements on live log chunks (``trace_chunks``), the log store of an S3 deployment (jobsvc.services.tracechunks).

Chunk N of a job's log starts at byte N * CHUNK and holds at most CHUNK bytes; only the last one is ever
short, and an append fills it before it starts the next. So the log's size is the last chunk's start plus
its length, and the chunk holding byte P starts at P - P % CHUNK.
"""

from __future__ import annotations

from typing import IO

from jobsvc.storage.queries.conn import Group
from jobsvc.storage.rows import Row

CHUNK = 128 * 1024  # Ci::BuildTraceChunk::CHUNK_SIZE


class LogChanged(Exception):
    """The last chunk was not what this transaction read: a writer the lock should have kept out."""


class TraceChunks(Group):
    async def tail(self, job_id: int) -> Row | None:
        """The live log's ``size`` and when it last grew (``updated_at``); None: the job has no chunks."""
        return await self.c.fetchone(
            """SELECT start + length(data) AS size, updated_at FROM trace_chunks
                WHERE job_id = ? ORDER BY start DESC LIMIT 1""",
            (job_id,),
        )

    async def size(self, job_id: int) -> int:
        row = await self.tail(job_id)
        return row["size"] if row else 0

    async def read(self, job_id: int, position: int, limit: int) -> list[Row]:
        """Up to ``limit`` chunks (``start``, ``data``) in order, from the one holding byte ``position``."""
        return await self.c.fetchall(
            "SELECT start, data FROM trace_chunks WHERE job_id = ? AND start >= ? ORDER BY start LIMIT ?",
            (job_id, position - position % CHUNK, limit),
        )

    async def append(self, job_id: int, body: IO[bytes], now: str) -> int:
        """Put the rest of ``body`` at the log's end: fill the last chunk, then add whole ones; the bytes added.

        The caller compared the log's size with the append's start in this same transaction. Each UPDATE
        also checks the length it read, so a writer the transaction's lock did not keep out fails here."""
        last = await self.c.fetchone(
            "SELECT start, data FROM trace_chunks WHERE job_id = ? ORDER BY start DESC LIMIT 1", (job_id,)
        )
        position, added = 0, 0
        if last is not None:
            data = bytes(last["data"])
            position = last["start"] + len(data)
            if len(data) < CHUNK and (head := body.read(CHUNK - len(data))):
                changed = await self.c.execute(
                    """UPDATE trace_chunks SET data = ?, updated_at = ?
                        WHERE job_id = ? AND start = ? AND length(data) = ?""",
                    (data + head, now, job_id, last["start"], len(data)),
                )
                if changed != 1:
                    raise LogChanged(job_id)
                position += len(head)
                added += len(head)
        while piece := body.read(CHUNK):
            await self.c.execute(
                "INSERT INTO trace_chunks (job_id, start, data, updated_at) VALUES (?, ?, ?, ?)",
                (job_id, position, piece, now),
            )
            position += len(piece)
            added += len(piece)
        return added

    async def delete(self, job_id: int) -> int:
        return await self.c.execute("DELETE FROM trace_chunks WHERE job_id = ?", (job_id,))
