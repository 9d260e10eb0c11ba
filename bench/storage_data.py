"""The data of storage_bench.py: one SQLite database made as gen_jobs_db.py makes it, copied into PostgreSQL.

* ``make_sqlite``: gen_jobs_db's schema and history (every job finished, so the first page of the big project
  is a full-fidelity page: runners, artifacts), plus two running jobs in project 2 with known job tokens:
  the benchmark sends each a big log through the runner API, on every deployment, and finishes the first
  (its log is archived: a file, or an object in the bucket); the second stays running (a live log: a file
  that grows, or chunks in the database).
* ``copy_to_postgres``: jobsvc migrates an empty database (``PostgresDatabase.open``, what ``jobsvc serve``
  does on start), then every table's rows go in by COPY, the identity sequences are moved past the highest
  ids (``setval``), and ``VACUUM (ANALYZE)`` (the visibility map and statistics of a settled database, and no
  insert-triggered autovacuum in the middle of the measurements).
* ``log_chunks``: the big log, CI-log-like text (or, ``incompressible``, seeded random bytes), made the same way
  every time (each archive row's file: gen_jobs_db.link_artifact_files).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import gen_jobs_db

from jobsvc.domain import tokens

TRACE_PROJECT = 2
TRACE_JOB_TOKEN = "glcbt-bench-storage-log-000000000"
LIVE_JOB_TOKEN = "glcbt-bench-storage-live-00000000"
MIB = 1024 * 1024


def make_sqlite(db: Path, n_jobs: int, n_projects: int, big_share: float, seed: int) -> dict:
    """A fresh database at ``db``; returns the facts the benchmark needs (tokens, ids, counts)."""
    began = time.perf_counter()
    con = sqlite3.connect(db, isolation_level=None)
    gen_jobs_db.create_schema(con)
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -1000000", "temp_store = MEMORY"):
        con.execute(f"PRAGMA {pragma}")
    con.execute("BEGIN")
    gen_jobs_db.fill_static(con, n_projects)
    facts = gen_jobs_db.fill_history(con, n_jobs, n_projects, big_share, seed, active_jobs=0)
    trace_job = _add_running_job(con, "big log", TRACE_JOB_TOKEN)
    live_job = _add_running_job(con, "live log", LIVE_JOB_TOKEN)
    con.execute("COMMIT")
    con.execute("ANALYZE")
    con.execute("PRAGMA journal_mode = WAL")
    page = [row[0] for row in con.execute("SELECT id FROM jobs WHERE project_id = 1 ORDER BY id DESC LIMIT 20")]
    marks = ",".join("?" * len(page))
    info = {
        "jobs": n_jobs + 2,  # the two running jobs of the big logs
        "projects": n_projects,
        "big_project": 1,
        "big_project_jobs": facts["project_jobs"][1],
        "pipelines": facts["pipelines"] + 2,
        "job_artifacts": con.execute("SELECT count(*) FROM job_artifacts").fetchone()[0],
        "page1_ids": page,
        "page1_artifacts": con.execute(
            f"SELECT count(*) FROM job_artifacts WHERE job_id IN ({marks})", page
        ).fetchone()[0],
        "admin_token": gen_jobs_db.ADMIN_TOKEN,
        "trace_project": TRACE_PROJECT,
        "trace_job": trace_job,
        "trace_job_token": TRACE_JOB_TOKEN,
        "live_job": live_job,
        "live_job_token": LIVE_JOB_TOKEN,
        "seed": seed,
    }
    con.close()
    info["sqlite_bytes"] = db.stat().st_size
    info["seconds"] = round(time.perf_counter() - began, 1)
    return info


def _add_running_job(con: sqlite3.Connection, name: str, token: str) -> int:
    """A pipeline of one running job in TRACE_PROJECT, with a known job token; returns the job's id."""
    pipeline = con.execute("SELECT max(id) + 1 FROM pipelines").fetchone()[0]
    job = con.execute("SELECT max(id) + 1 FROM jobs").fetchone()[0]
    iid = con.execute("SELECT coalesce(max(iid), 0) + 1 FROM pipelines WHERE project_id = ?", (TRACE_PROJECT,))
    sha = hashlib.sha1(b"storage-bench " + name.encode()).hexdigest()
    now = gen_jobs_db.utc(time.time() - 600)
    con.execute(
        """INSERT INTO commits (project_id, sha, title, message, author_name, author_email, authored_date,
               committer_name, committer_email, committed_date, created_at, parent_ids)
           VALUES (?, ?, ?, ?, 'Bench', 'bench@example.com', ?, 'Bench', 'bench@example.com', ?, ?, '[]')""",
        (TRACE_PROJECT, sha, name, name, now, now, now),
    )
    con.execute(
        """INSERT INTO pipelines (id, iid, project_id, ref, sha, status, user_id, created_at, updated_at, started_at)
           VALUES (?, ?, ?, 'main', ?, 'running', 1, ?, ?, ?)""",
        (pipeline, iid.fetchone()[0], TRACE_PROJECT, sha, now, now, now),
    )
    con.execute(
        """INSERT INTO jobs (id, project_id, pipeline_id, name, stage, status, user_id, runner_id, token_digest,
               script, created_at, updated_at, queued_at, started_at)
           VALUES (?, ?, ?, ?, 'build', 'running', 1, 1, ?, '["make"]', ?, ?, ?, ?)""",
        (job, TRACE_PROJECT, pipeline, name, tokens.digest(token), now, now, now, now),
    )
    return job


def copy_to_postgres(db: Path, dsn: str) -> dict:
    return asyncio.run(_copy(db, dsn))


async def _copy(db: Path, dsn: str) -> dict:
    import asyncpg

    from jobsvc.storage.postgres import PostgresDatabase

    began = time.perf_counter()
    migrated = PostgresDatabase(dsn)
    await migrated.open()  # jobsvc's own migrations of schema.postgres.sql, as `jobsvc serve` runs them
    await migrated.close()
    counts: dict[str, int] = {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    pg = await asyncpg.connect(dsn)
    try:
        tables = [
            row[0]
            for row in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
        async with pg.transaction():
            for table in tables:
                wanted = await pg.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                    "AND table_name = $1",
                    table,
                )
                columns = [c[1] for c in con.execute(f'PRAGMA table_info("{table}")')]
                columns = [c for c in columns if c in {r[0] for r in wanted}]
                if not wanted or await pg.fetchval(f'SELECT count(*) FROM "{table}"'):
                    continue  # not a table of PostgreSQL's schema, or one the migrations filled
                names = ", ".join(f'"{c}"' for c in columns)
                cursor, counts[table] = con.execute(f'SELECT {names} FROM "{table}"'), 0
                while rows := cursor.fetchmany(50_000):
                    await pg.copy_to_table(table, source=_copy_text(rows), columns=columns, format="text")
                    counts[table] += len(rows)
            identities = await pg.fetch(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND is_identity = 'YES'"
            )
            for table, column in identities:
                await pg.execute(
                    f"SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'), "
                    f'coalesce((SELECT max("{column}") FROM "{table}"), 0) + 1, false)'
                )
        await pg.execute("VACUUM (ANALYZE)")  # what autovacuum would do soon after: no vacuum in the middle of a run
    finally:
        await pg.close()
        con.close()
    return {"rows": counts, "seconds": round(time.perf_counter() - began, 1)}


def _copy_text(rows: list[tuple]) -> io.BytesIO:
    """Rows in COPY's text format: tab-separated, \\N for NULL, backslash escapes."""
    out = io.StringIO()
    for row in rows:
        out.write("\t".join(_copy_field(value) for value in row))
        out.write("\n")
    return io.BytesIO(out.getvalue().encode("utf-8"))


def _copy_field(value: object) -> str:
    if value is None:
        return "\\N"
    text = repr(value) if isinstance(value, float) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def log_chunks(mib: int, chunk_mib: int = 8, seed: int = 1, incompressible: bool = False) -> Iterator[bytes]:
    """``mib`` MiB of CI-log-like text in chunks of ``chunk_mib`` MiB (the last may be shorter); ``incompressible``:
    random bytes instead, which a store that compresses what it keeps (SeaweedFS) stores as they are."""
    rng = random.Random(seed)
    if incompressible:
        for start in range(0, mib * MIB, chunk_mib * MIB):
            yield rng.randbytes(min(chunk_mib * MIB, mib * MIB - start))
        return
    lines = []
    for n in range(20_000):
        colour = rng.choice(("\x1b[0;m", "\x1b[32;1m", "\x1b[0K", ""))
        lines.append(f"{colour}[{n:06d}] {rng.choice(('ok', 'run', 'fetch', 'build'))} {rng.getrandbits(96):024x}\n")
    block = "".join(lines).encode()
    total, chunk = mib * MIB, chunk_mib * MIB
    made, index = 0, 0
    while made < total:
        size = min(chunk, total - made)
        head = f"section_start:{index}:chunk_{index}\n".encode()
        body = bytearray(head)
        while len(body) < size:
            body += block
        yield bytes(body[:size])
        made += size
        index += 1
