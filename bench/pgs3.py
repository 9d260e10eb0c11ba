"""bench/run's PostgreSQL + S3 rows: the job list on SQLite + a directory against PostgreSQL + S3, one and two
processes, on the same data, in interleaved rounds.

The data is storage_data.py's (gen_jobs_db's generator, ``--pg-jobs`` jobs in 10 projects, 70 % of them in
project 1, every job finished), made fresh in ``folder``: SQLite with a file for every archive row, the same
rows copied into a fresh PostgreSQL cluster (fsync on; backing.py), and an object for every archive row in a
fresh SeaweedFS bucket, so that no jobsvc logs a missing one at start. Servers, all on the server CPU:

* ``sqlite``: ``jobsvc serve --data-dir``;
* ``pg+s3``: ``--database-url postgresql://… --store-url s3://…``;
* ``pg+s3×2``: a second such process on the same database and bucket; measured with one wrk per process,
  half the connections each, their requests added up (jobsvc binds without SO_REUSEPORT).

Every process started here is stopped whatever happens (backing's context managers, ``stop_process``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import sqlite3
import time
from pathlib import Path

import gen_jobs_db
import probes
import storage_data
from backing import Postgres, SeaweedS3
from common import jobsvc_serve, run_wrk, run_wrks, spawn, stop_process, wait_listening

from jobsvc.storage.s3 import S3Store
from jobsvc.storage.s3url import Credentials, parse_store_url

CONNS = 64
TWO = "pg+s3×2"


async def _put_objects(url: str, credentials: Credentials, keys: list[str], body: bytes, parallel: int = 32) -> None:
    store = S3Store(parse_store_url(url), credentials, max_connections=parallel)
    await store.open()
    try:
        queue = list(keys)

        async def worker() -> None:
            while queue:
                await store.put_bytes(queue.pop(), body)

        await asyncio.gather(*(worker() for _ in range(parallel)))
    finally:
        await store.close()


def _page_ids(port: int, path: str, token: str) -> tuple[list[int], int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"PRIVATE-TOKEN": token})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise SystemExit(f"PostgreSQL + S3 block: page 1 answered {response.status}: {body[:300]!r}")
    return [job["id"] for job in json.loads(body)], body.count(b'"artifacts_file":')


def compare(folder: Path, args: argparse.Namespace, lua: Path) -> dict:
    """The rounds' req/s and p99 per deployment, and the set-up's facts."""
    began = time.perf_counter()
    folder.mkdir(parents=True)
    sqlite_dir, shared_dir = folder / "sqlite", folder / "pg-s3"
    sqlite_dir.mkdir()
    db = sqlite_dir / "jobsvc.sqlite3"
    info = storage_data.make_sqlite(db, args.pg_jobs, 10, 0.7, 1)
    gen_jobs_db.link_artifact_files(db, sqlite_dir)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        keys = [row[0] for row in con.execute("SELECT store_key FROM job_artifacts WHERE file_type = 'archive'")]
    print(f"# PostgreSQL + S3: {info['jobs']:,} jobs, {len(keys):,} archives", flush=True)
    servers: dict[str, tuple] = {}
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(Postgres(folder / "postgres", args.server_cpu))
        pg.sql("CREATE DATABASE bench")
        pg_version = pg.sql("SHOW server_version")
        storage_data.copy_to_postgres(db, pg.dsn_for("bench"))
        s3 = stack.enter_context(SeaweedS3(folder / "seaweedfs", args.server_cpu))
        bucket = s3.new_bucket()
        url = f"s3://{bucket}/jobsvc?endpoint_url={s3.endpoint_url}&region={s3.region}"
        credentials = Credentials(s3.access_key, s3.secret_key)
        asyncio.run(_put_objects(url, credentials, keys, (sqlite_dir / keys[0]).read_bytes() if keys else b""))
        env = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
        env = {**os.environ, **env}
        pg_args = ["--data-dir", str(shared_dir), "--database-url", pg.dsn_for("bench"), "--store-url", url]
        spawned = {}
        for name, serve in (("sqlite", ["--data-dir", str(sqlite_dir)]), ("pg+s3", pg_args), ("pg+s3 b", pg_args)):
            log = folder / f"{name.replace(' ', '-')}.log"
            spawned[name] = (spawn(jobsvc_serve([*serve, "--jobs-rate-limit", "0"], args.server_cpu), log, env), log)
            stack.callback(stop_process, spawned[name][0])
        for name, (proc, log) in spawned.items():  # all three start at once
            servers[name] = (proc, wait_listening(proc, log), log)
        path, token = f"/api/v4/projects/{info['big_project']}/jobs?per_page=20", info["admin_token"]
        headers = {"PRIVATE-TOKEN": token}
        want = (info["page1_ids"], info["page1_artifacts"])
        for name, (_, port, _) in servers.items():
            if _page_ids(port, path, token) != want:
                raise SystemExit(f"{name}: page 1 is not {want}: {_page_ids(port, path, token)}")
        setup_s = time.perf_counter() - began

        def measure(case: str, secs: float) -> dict:
            if case == TWO:
                urls = [f"http://127.0.0.1:{servers[n][1]}{path}" for n in ("pg+s3", "pg+s3 b")]
                return run_wrks(urls, headers, CONNS // 2, secs, lua, args.client_cpu)
            return run_wrk(f"http://127.0.0.1:{servers[case][1]}{path}", headers, CONNS, secs, lua, args.client_cpu)

        cases = ["sqlite", "pg+s3", TWO]
        if not args.quick:  # --quick: the round is the warm-up too
            for case in cases:
                measure(case, 1)
        rounds = []
        for number in range(args.pg_rounds):
            time.sleep(1)
            result = {}
            for case in cases[number % 3 :] + cases[: number % 3]:
                result[case] = measure(case, args.secs)
                time.sleep(args.pause)
            rounds.append(result)
            print(
                f"pg round {number + 1}: " + ", ".join(f"{c} {r['rps']:,.0f} req/s" for c, r in result.items()),
                flush=True,
            )
        for name, (_, port, _) in servers.items():
            if _page_ids(port, path, token) != want:
                raise SystemExit(f"{name}: page 1 changed during the run")
    problems = [f"{name}: {line}" for name, (_, _, log) in servers.items() for line in probes.error_lines(log)]
    return {
        "rounds": rounds,
        "jobs": info["jobs"],
        "big_project_jobs": info["big_project_jobs"],
        "archives": len(keys),
        "pg_version": pg_version,
        "setup_s": setup_s,
        "problems": problems,
    }
