#!/usr/bin/env python3
"""The storage deployments compared over HTTP: SQLite + a directory against PostgreSQL + S3 (and PostgreSQL + a
directory), one process against two.

    .venv/bin/python bench/storage_bench.py [--quick] [--rounds 5] [--secs 5] [--json FILE]

In one run, with interleaved rounds, it measures

* (a) ``GET /api/v4/projects/1/jobs?per_page=20`` (admin token, full job entities),
* (b) ``GET /api/v4/projects/2/jobs/:id/trace`` with ``Range: bytes=-65536`` of a finished job's big log
  (archived: a file in the directory store, an object in the bucket) and
* (d) the same tail of a running job's big live log (a file that grows; on S3 deployments, chunks in the
  database: jobsvc.services.tracechunks),

on each deployment, every one of them running the whole time and measured one at a time:

* ``sqlite``: ``jobsvc serve --data-dir D`` (SQLite and the file store in D);
* ``pg``: ``--database-url postgresql://…`` with the file store in its own data directory;
* ``pg+s3``: ``--database-url`` (a database of its own) and ``--store-url s3://bucket/jobsvc?endpoint_url=…``
  on SeaweedFS (``weed mini``);
* (c) ``pg×2`` and ``pg+s3×2``: a second ``jobsvc serve`` on the same database and store, and one wrk per
  process with half the connections each, their requests added up (jobsvc binds without SO_REUSEPORT, so
  two processes on one address need a proxy in front; the two wrk runs stand for it);
* ``s3 direct`` (the archived tail only): wrk straight at SeaweedFS, a presigned GET of the archived log's
  object with the same Range: what the store alone costs, with no jobsvc in between;
* ``sqlite+limit`` and ``pg+limit`` (the job list, pinned): one more process of each with the job-list rate
  limit counting, at a limit no run reaches (10^9 a minute): in memory on SQLite; on PostgreSQL, where the
  processes share the count, one upsert in a write transaction (advisory lock, commit) per request. The
  other servers run with ``--jobs-rate-limit 0``, as bench/run's do.

Each load measurement also takes the CPU time (utime + stime, /proc) that jobsvc, PostgreSQL (all its
processes) and SeaweedFS spent on it, per request.

Placements: "pinned" puts the whole server side (jobsvc, PostgreSQL and its backends, SeaweedFS) on
--server-cpu and wrk on --client-cpu, so every deployment gets the same one core; "whole machine" lets
every process (wrk too) use every CPU, where a second jobsvc process has a core to use. Processes move
between the two with ``taskset -a -p``, all threads and children included.

The data (gen_jobs_db.py's generator, every job finished and archives expiring in 100 years, so that the
sweeper leaves the data alone) is made fresh in --dir: SQLite with stdlib sqlite3, then copied into a fresh
PostgreSQL cluster (jobsvc's own migrations, then COPY). PostgreSQL runs with fsync, synchronous_commit
and full_page_writes on. The big logs reach every deployment through the runner API (PATCHes, then for the
finished one ``PUT state=success``), so each stores them its own way. Before every round each server is
checked: the page has the expected 20 job ids and artifacts and the same JSON on every deployment, and both
tails are the logs' last 65,536 bytes with the right Content-Range. Every process started is stopped in all
cases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import gen_jobs_db
import storage_data
from backing import Postgres, PostgresServer, SeaweedS3
from common import (
    descendants,
    pin_self,
    repin,
    run_wrk,
    run_wrks,
    single,
    spread,
    start_jobsvc,
    stop_process,
    write_wrk_script,
)

from jobsvc.storage.s3 import S3Store
from jobsvc.storage.s3url import Credentials, parse_store_url

TAIL = 65536
BUCKET_PREFIX = "jobsvc"
LIST, TRACE, LIVE = "list", "tail", "live tail"
PINNED, WHOLE = "pinned", "whole machine"
PAIRS = {"pg×2": ("pg", "pg-b"), "pg+s3×2": ("pg+s3", "pg+s3-b")}  # two processes: the pair's servers
DIRECT = "s3 direct"  # wrk straight at the bucket: a presigned GET of the archived log
LIMITED = ("sqlite+limit", "pg+limit")
# what each row is compared with, besides sqlite: one process, no counting, the directory store, jobsvc
BASES = {
    "pg": "sqlite",
    "pg+s3": "pg",
    "pg×2": "pg",
    "pg+s3×2": "pg+s3",
    "sqlite+limit": "sqlite",
    "pg+limit": "pg",
    DIRECT: "pg+s3",
}
SLOW = frozenset({"pg+s3", "pg+s3×2", DIRECT})  # their archived tails run --slow-secs: see seconds_of
PRESIGN_EXPIRY = 6 * 3600
WRK_TIMEOUT = 30  # s: a slow deployment's requests queue behind 64 connections; they are slow, not errors
UNREACHED_LIMIT = 10**9  # requests per minute and user
STATEMENT_STATS = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track_planning": "on"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    log: Path


@dataclass
class Setup:
    info: dict
    servers: dict[str, Server]
    tail: bytes
    log_size: int
    backing_pids: dict[str, int]  # "postgres", "weed": the process trees of the shared servers
    pg: PostgresServer
    reference_page: bytes = b""
    uploads: dict[str, dict] = field(default_factory=dict)
    direct_url: str = ""  # a presigned GET of the archived log's object (with S3)

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.servers.values()] + list(self.backing_pids.values())


# --- checks -----------------------------------------------------------------------------------------


def list_path(info: dict) -> str:
    return f"/api/v4/projects/{info['big_project']}/jobs?per_page=20"


def trace_path(info: dict, kind: str = TRACE) -> str:
    job = info["trace_job"] if kind == TRACE else info["live_job"]
    return f"/api/v4/projects/{info['trace_project']}/jobs/{job}/trace"


def path_of(info: dict, kind: str) -> str:
    return list_path(info) if kind == LIST else trace_path(info, kind)


def check_server(setup: Setup, server: Server) -> None:
    """The page and the tail as they must be; SystemExit naming the server otherwise."""
    info, headers = setup.info, {"PRIVATE-TOKEN": setup.info["admin_token"]}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("GET", list_path(info), headers=headers)
        response = conn.getresponse()
        body = response.read()
        page = json.loads(body) if response.status == 200 else []
        ids = [job["id"] for job in page]
        artifacts = sum(1 for job in page for item in job.get("artifacts", []) if item["file_type"] == "archive")
        if response.status != 200 or ids != info["page1_ids"] or artifacts != info["page1_artifacts"]:
            raise SystemExit(
                f"{server.name}: the page is not what it was: {response.status}, ids {ids}, "
                f"{artifacts} archives (expected {info['page1_artifacts']})"
            )
        normal = body.replace(f"127.0.0.1:{server.port}".encode(), b"HOST")
        if not setup.reference_page:
            setup.reference_page = normal
        elif normal != setup.reference_page:
            raise SystemExit(
                f"{server.name}: the page's JSON differs from the first server's:\n{_first_diff(setup, normal)}"
            )
        for kind in (TRACE, LIVE):
            conn.request("GET", trace_path(info, kind), headers={**headers, "Range": f"bytes=-{TAIL}"})
            check_tail(setup, f"{server.name}: the {kind}", conn.getresponse())
    finally:
        conn.close()


def check_tail(setup: Setup, what: str, response: http.client.HTTPResponse) -> None:
    tail = response.read()
    expected_range = f"bytes {setup.log_size - TAIL}-{setup.log_size - 1}/{setup.log_size}"
    if response.status != 206 or tail != setup.tail or response.getheader("Content-Range") != expected_range:
        raise SystemExit(
            f"{what} is wrong: {response.status}, {len(tail)} bytes, "
            f"Content-Range {response.getheader('Content-Range')!r} (expected {expected_range!r})"
        )


def check_direct(setup: Setup) -> None:
    """The presigned GET gives the same tail, straight from the bucket."""
    conn, path = direct_connection(setup.direct_url)
    try:
        conn.request("GET", path, headers={"Range": f"bytes=-{TAIL}"})
        check_tail(setup, f"{DIRECT}: the tail", conn.getresponse())
    finally:
        conn.close()


def direct_connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=60), f"{parts.path}?{parts.query}"


def _first_diff(setup: Setup, normal: bytes) -> str:
    mine, theirs = json.loads(normal), json.loads(setup.reference_page)
    for a, b in zip(mine, theirs, strict=True):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return f"job {a.get('id')} {key}: {a.get(key)!r} against {b.get(key)!r}"
    return "(no field differs)"


def page_ok(info: dict):
    return lambda status, body: status == 200 and body.count(b'"id":') >= 20


def tail_ok(expected: bytes):
    return lambda status, body: status == 206 and body == expected


# --- set-up -----------------------------------------------------------------------------------------


def send_log(server: Server, job: int, token: str, chunks: list[bytes], finish: bool = True) -> dict:
    """A big log through the runner API: PATCHes at its end, then (``finish``) ``PUT state=success``; the
    seconds each took."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    try:
        began, start = time.perf_counter(), 0
        for chunk in chunks:
            headers = {"JOB-TOKEN": token, "Content-Range": f"{start}-{start + len(chunk) - 1}"}
            conn.request("PATCH", f"/api/v4/jobs/{job}/trace", body=chunk, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 202:
                raise SystemExit(f"{server.name}: PATCH of the log at {start}: {response.status} {answer[:200]!r}")
            start += len(chunk)
        appended = time.perf_counter() - began
        if not finish:
            return {"append_s": appended, "bytes": start}
        body = json.dumps({"token": token, "state": "success"})
        conn.request("PUT", f"/api/v4/jobs/{job}", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200:
            raise SystemExit(f"{server.name}: PUT state=success: {response.status} {answer[:200]!r}")
        return {"append_s": appended, "finish_s": time.perf_counter() - began - appended, "bytes": start}
    finally:
        conn.close()


def serve_args(args: argparse.Namespace, rate_limit: int = 0) -> list[str]:
    limit = ["--jobs-rate-limit", str(rate_limit)]
    return [*limit, "--log-level", "warning", "--trace-size-limit", str(args.log_mib + 16)]


def set_up(args: argparse.Namespace, run: Path, stack: contextlib.ExitStack, with_s3: bool) -> Setup:
    began = time.perf_counter()
    sqlite_dir, pg_dir = run / "sqlite", run / "pg-dir"
    sqlite_dir.mkdir()
    db = sqlite_dir / "jobsvc.sqlite3"
    info = storage_data.make_sqlite(db, args.jobs, args.projects, args.big_share, args.seed)
    print(
        f"# SQLite: {info['jobs']:,} jobs, {info['big_project_jobs']:,} in project 1, {info['seconds']} s", flush=True
    )
    if info["page1_artifacts"] < 1:
        raise SystemExit("page 1 of this data set holds no archive: pick another --seed")
    info["artifact_files"] = gen_jobs_db.link_artifact_files(db, sqlite_dir)
    gen_jobs_db.link_artifact_files(db, pg_dir)
    postgres = Postgres(run / "postgres", args.server_cpu, STATEMENT_STATS if args.pg_statements else None)
    pg = stack.enter_context(postgres)
    backing = {"postgres": postgres.pid}
    pg.sql("CREATE DATABASE bench")
    copied = storage_data.copy_to_postgres(db, pg.dsn_for("bench"))
    info["pg_copy_seconds"] = copied["seconds"]
    if args.pg_statements:
        pg.sql("CREATE EXTENSION pg_stat_statements", "bench")
    info["pg_version"] = pg.sql("SHOW server_version")
    info["pg_settings"] = {name: pg.sql(f"SHOW {name}") for name in ("fsync", "synchronous_commit", "shared_buffers")}
    print(f"# PostgreSQL {info['pg_version']}: copied in {copied['seconds']} s, {info['pg_settings']}", flush=True)
    if with_s3:
        pg.sql("CREATE DATABASE bench_s3 TEMPLATE bench")
        chunk_flags = [f"-filer.maxMB={args.weed_chunk_mb}"] if args.weed_chunk_mb else []
        weed = SeaweedS3(run / "seaweedfs", args.server_cpu, chunk_flags)
        s3 = stack.enter_context(weed)
        backing["weed"] = weed.pid
        bucket = s3.new_bucket()

    servers: dict[str, Server] = {}

    def start(name: str, extra: list[str], env: dict[str, str] | None = None, rate_limit: int = 0) -> None:
        log = run / f"{name}.log"
        proc, port = start_jobsvc([*extra, *serve_args(args, rate_limit)], log, args.server_cpu, env=env)
        stack.callback(stop_process, proc)
        servers[name] = Server(name, proc, port, log)

    start("sqlite", ["--data-dir", str(sqlite_dir)])
    start("pg", ["--data-dir", str(pg_dir), "--database-url", pg.dsn_for("bench")])
    start("pg-b", ["--data-dir", str(pg_dir), "--database-url", pg.dsn_for("bench")])
    # the same, with the job-list rate limit counting (a limit no run reaches): in memory on SQLite, one
    # upsert in a write transaction per request on PostgreSQL, where the processes share the count
    start("sqlite+limit", ["--data-dir", str(sqlite_dir)], rate_limit=UNREACHED_LIMIT)
    start("pg+limit", ["--data-dir", str(pg_dir), "--database-url", pg.dsn_for("bench")], rate_limit=UNREACHED_LIMIT)
    if with_s3:
        url = f"s3://{bucket}/{BUCKET_PREFIX}?endpoint_url={s3.endpoint_url}&region={s3.region}"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
        for name in PAIRS["pg+s3×2"]:  # stateless: nothing of theirs is on local disk, so a directory each
            start(
                name,
                ["--data-dir", str(run / name), "--database-url", pg.dsn_for("bench_s3"), "--store-url", url],
                env,
            )

    chunks = list(storage_data.log_chunks(args.log_mib, incompressible=args.incompressible_log))
    whole = b"".join(chunks)
    setup = Setup(info, servers, whole[-TAIL:], len(whole), backing, pg)
    for name in ("sqlite", "pg", "pg+s3"):  # one process of each database and store
        if name in servers:
            done = send_log(servers[name], info["trace_job"], info["trace_job_token"], chunks)
            live = send_log(servers[name], info["live_job"], info["live_job_token"], chunks, finish=False)
            setup.uploads[name] = {**done, "live_append_s": live["append_s"]}
            print(f"# {name}: logs of {args.log_mib} MiB sent: {setup.uploads[name]}", flush=True)
    if with_s3:
        setup.direct_url = presigned_log_url(pg, info["trace_job"], url, s3)
        check_direct(setup)
    for server in servers.values():
        check_server(setup, server)
    info["setup_seconds"] = round(time.perf_counter() - began, 1)
    return setup


def presigned_log_url(pg: PostgresServer, job: int, store_url: str, s3) -> str:
    """A presigned GET of the object that holds the job's archived log (its ``trace`` row's key)."""
    key = pg.sql(f"SELECT store_key FROM job_artifacts WHERE job_id = {int(job)} AND file_type = 'trace'", "bench_s3")
    if not key:
        raise SystemExit(f"pg+s3: job {job} has no archived log")

    async def presign() -> str:
        credentials = Credentials(s3.access_key, s3.secret_key)
        async with S3Store(parse_store_url(store_url), credentials) as store:
            return await store.presigned_url(key, expires=PRESIGN_EXPIRY)

    return asyncio.run(presign())


# --- measuring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    kind: str  # LIST, TRACE or LIVE
    target: str  # a server's name, a pair of PAIRS, or DIRECT
    placement: str  # PINNED or WHOLE

    @property
    def key(self) -> str:
        return f"{self.kind} {self.target} {self.placement}"


def cases(setup: Setup) -> list[Case]:
    s3 = "pg+s3" in setup.servers
    deployments = ["sqlite", "pg", "pg×2", *(["pg+s3", "pg+s3×2"] if s3 else [])]
    singles = [name for name in deployments if name in setup.servers]
    found = []
    for placement in (PINNED, WHOLE):
        found += [Case(LIST, target, placement) for target in deployments]
        found += [Case(TRACE, target, placement) for target in (*deployments, *([DIRECT] if s3 else []))]
        found += [Case(LIVE, target, placement) for target in singles]
    found += [Case(LIST, target, PINNED) for target in LIMITED]
    return found


def seconds_of(case: Case, args: argparse.Namespace) -> float:
    """How long wrk runs the case. A tail from SeaweedFS takes tens of ms of its CPU (it decompresses a whole
    chunk), so 64 requests at once take seconds each: a run must be long against that, or most of them end
    after it, uncounted, and the rate (and the CPU per request) come out wrong."""
    return args.slow_secs if case.kind == TRACE and case.target in SLOW else args.secs


def cpu_seconds(pid: int) -> float:
    """CPU time of a process tree (every thread), from /proc: utime + stime of each live process, plus cutime +
    cstime, the time of its children that have exited (PostgreSQL's backends come and go with asyncpg's pool)."""
    total = 0.0
    for each in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
    return total


def cpu_groups(setup: Setup, case: Case) -> dict[str, list[int]]:
    if case.target == DIRECT:
        return {"weed": [setup.backing_pids["weed"]]}
    names = PAIRS.get(case.target, (case.target,))
    groups = {"jobsvc": [setup.servers[n].proc.pid for n in names]}
    if not case.target.startswith("sqlite"):
        groups["postgres"] = [setup.backing_pids["postgres"]]
    if case.target.startswith("pg+s3"):
        groups["weed"] = [setup.backing_pids["weed"]]
    return groups


def measure(setup: Setup, case: Case, args: argparse.Namespace, lua: Path, secs: float) -> dict:
    info = setup.info
    path = path_of(info, case.kind)
    headers = {"PRIVATE-TOKEN": info["admin_token"]}
    if case.kind != LIST:
        headers["Range"] = f"bytes=-{TAIL}"
    cpus = args.client_cpu if case.placement == PINNED else args.all_cpus
    groups = cpu_groups(setup, case)
    before = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
    if case.target in PAIRS:
        urls = [f"http://127.0.0.1:{setup.servers[n].port}{path}" for n in PAIRS[case.target]]
        result = run_wrks(urls, headers, args.conns // 2, secs, lua, cpus, WRK_TIMEOUT)
    else:
        url = setup.direct_url if case.target == DIRECT else f"http://127.0.0.1:{setup.servers[case.target].port}{path}"
        if case.target == DIRECT:
            headers = {"Range": f"bytes=-{TAIL}"}
        result = run_wrk(url, headers, args.conns, secs, lua, cpus, WRK_TIMEOUT)
    spent = {name: sum(cpu_seconds(pid) for pid in pids) - before[name] for name, pids in groups.items()}
    result["cpu_ms_per_request"] = {name: 1000 * s / max(1, result["requests"]) for name, s in spent.items()}
    return result


def latency(setup: Setup, case: Case, n: int) -> tuple[float, float]:
    """p50 and p99 ms of ``n`` sequential requests of the case on one keep-alive connection."""
    if case.target == DIRECT:
        conn, path = direct_connection(setup.direct_url)
        headers = {}
    else:
        conn = http.client.HTTPConnection("127.0.0.1", setup.servers[case.target].port, timeout=60)
        path, headers = path_of(setup.info, case.kind), {"PRIVATE-TOKEN": setup.info["admin_token"]}
    try:
        if case.kind == LIST:
            return single(conn, path, headers, n, check=page_ok(setup.info))
        return single(conn, path, {**headers, "Range": f"bytes=-{TAIL}"}, n, check=tail_ok(setup.tail))
    finally:
        conn.close()


def place(setup: Setup, placement: str, args: argparse.Namespace) -> None:
    cpus = str(args.server_cpu) if placement == PINNED else args.all_cpus
    for pid in setup.pids():
        repin(pid, cpus)


def run_rounds(setup: Setup, args: argparse.Namespace, lua: Path) -> dict:
    all_cases = cases(setup)
    results: dict = {c.key: {"case": c.__dict__, "load": [], "single": []} for c in all_cases}
    blocks = {p: [c for c in all_cases if c.placement == p] for p in (PINNED, WHOLE)}
    for placement, block in blocks.items():  # warm-up, unmeasured
        place(setup, placement, args)
        for case in block:
            measure(setup, case, args, lua, args.warmup)
    if args.pg_statements:
        setup.pg.sql("SELECT pg_stat_statements_reset()", "bench")
    for number in range(args.rounds):
        time.sleep(1)
        place(setup, PINNED, args)
        for server in setup.servers.values():
            check_server(setup, server)
        if setup.direct_url:
            check_direct(setup)
        order = (PINNED, WHOLE) if number % 2 == 0 else (WHOLE, PINNED)
        for placement in order:
            place(setup, placement, args)
            block = blocks[placement]
            shift = number % len(block)
            for case in block[shift:] + block[:shift]:
                time.sleep(0.3)  # what the last wrk left queued is done
                entry = results[case.key]
                if case.placement == PINNED and case.target not in PAIRS:
                    entry["single"].append(latency(setup, case, args.single))
                load = measure(setup, case, args, lua, seconds_of(case, args))
                entry["load"].append(load)
                lat = f"  single p50 {entry['single'][-1][0]:.2f} ms" if entry["single"] else ""
                cpu = " ".join(f"{k} {v:.2f}" for k, v in load["cpu_ms_per_request"].items())
                print(
                    f"round {number + 1} {case.key:36} {load['rps']:8,.0f} req/s  p50 {load['p50']:6.2f} ms  "
                    f"bad {load['bad']}{lat}  cpu ms/req: {cpu}",
                    flush=True,
                )
    place(setup, PINNED, args)
    for server in setup.servers.values():
        check_server(setup, server)
    return results


def statement_stats(pg: PostgresServer, top: int = 8) -> list[tuple[int, int, float, float, str]]:
    """The statements of database bench that took the most time (planning + execution), from pg_stat_statements:
    calls, plans (how many of the calls were planned), planning ms per call, execution ms per call, the text."""
    out = pg.sql(
        "WITH q AS (SELECT s.*, regexp_replace(s.query, '\\s+', ' ', 'g') AS text FROM pg_stat_statements s "
        "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'bench') "
        "SELECT calls, plans, total_plan_time / greatest(calls, 1), mean_exec_time, "
        "CASE WHEN length(text) > 130 THEN left(text, 60) || ' … ' || right(text, 60) ELSE text END FROM q "
        f"ORDER BY total_plan_time + total_exec_time DESC LIMIT {top}",
        "bench",
    )
    rows = []
    for line in out.splitlines():
        calls, plans, plan, execute, text = line.split("|", 4)
        rows.append((int(calls), int(plans), float(plan), float(execute), text.replace("|", "\\|")))
    return rows


# --- the report -------------------------------------------------------------------------------------


def ratios(results: dict, case: str, base: str) -> list[float]:
    return [a["rps"] / b["rps"] for a, b in zip(results[case]["load"], results[base]["load"], strict=True)]


def report(setup: Setup, results: dict, args: argparse.Namespace, with_s3: bool) -> None:
    rounds = len(next(iter(results.values()))["load"])
    print(
        f"\nwrk {args.conns} connections (×2: {args.conns // 2} to each process), {rounds} interleaved rounds × "
        f"{args.secs:g} s (S3 tails {args.slow_secs:g} s); medians [min–max] over rounds; ratios taken within each "
        "round; 'vs base': against the row BASES names (one process, no counting, the directory store, or jobsvc "
        "in front of the bucket)\n"
    )
    order = ("sqlite", "sqlite+limit", "pg", "pg+limit", "pg×2", "pg+s3", "pg+s3×2", DIRECT)
    for placement in (PINNED, WHOLE):
        print(f"\n{placement}:\n")
        print(
            "| request | deployment | req/s | vs sqlite | vs base | wrk p50 / p99 ms | single p50 / p99 ms "
            "| CPU ms per request | bad |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for kind in (LIST, TRACE, LIVE):
            for target in order:
                key = f"{kind} {target} {placement}"
                if key in results:
                    print(report_row(results, kind, target, placement))
    for limited in LIMITED:
        without = limited.split("+")[0]
        per_round = ratios(results, f"{LIST} {limited} {PINNED}", f"{LIST} {without} {PINNED}")
        print(f"\n{limited} / {without}, job list, pinned: {spread(per_round, 2)} per round")
    print("\nthe logs sent through the runner API, once per deployment:\n")
    for name, upload in setup.uploads.items():
        mib = upload["bytes"] / 2**20
        print(
            f"* {name}: {mib:.0f} MiB in PATCHes of 8 MiB: {upload['append_s']:.2f} s "
            f"({mib / upload['append_s']:.0f} MiB/s); PUT state=success (archives the log): "
            f"{upload['finish_s']:.2f} s; the live log's PATCHes: {upload['live_append_s']:.2f} s"
        )
    if not with_s3:
        print("\nno PG+S3 rows: --no-s3")


def report_row(results: dict, kind: str, target: str, placement: str) -> str:
    key = f"{kind} {target} {placement}"
    loads, singles = results[key]["load"], results[key]["single"]
    vs_sqlite = spread(ratios(results, key, f"{kind} sqlite {placement}"), 2)
    base = BASES.get(target)
    base_key = f"{kind} {base} {placement}"
    vs_base = f"{spread(ratios(results, key, base_key), 2)} ({base})" if base_key in results else ""
    cpu = {
        name: statistics.median(load["cpu_ms_per_request"][name] for load in loads)
        for name in loads[0]["cpu_ms_per_request"]
    }
    lat = (
        f"{statistics.median(s[0] for s in singles):.2f} / {statistics.median(s[1] for s in singles):.2f}"
        if singles
        else ""
    )
    return (
        f"| {kind} | {target} | {spread([x['rps'] for x in loads])} | {vs_sqlite} | {vs_base} "
        f"| {statistics.median(x['p50'] for x in loads):.1f} / {statistics.median(x['p99'] for x in loads):.1f} "
        f"| {lat} | {', '.join(f'{name} {ms:.2f}' for name, ms in cpu.items())} | {sum(x['bad'] for x in loads)} |"
    )


def _flagged(line: str) -> bool:
    return ("ERROR" in line or "Traceback" in line) and "is missing;" not in line


def server_log_problems(setup: Setup) -> dict[str, dict]:
    """Per server: lines with ERROR or Traceback (how many, and the first few with the 20 lines after each),
    the start-up ones about missing artifact files counted apart."""
    found: dict[str, dict] = {}
    for server in setup.servers.values():
        lines = server.log.read_text(errors="replace").splitlines()
        missing = sum("is missing; its downloads answer 404" in line for line in lines)
        bad = [n for n, line in enumerate(lines) if _flagged(line)]
        found[server.name] = {"errors": len(bad), "missing_artifact_files": missing}
        if bad:
            found[server.name]["first"] = ["\n".join(lines[n : n + 20]) for n in bad[:3]]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/jobsvc-bench/storage"), help="made afresh; removed")
    parser.add_argument("--keep", action="store_true", help="leave --dir in place after the run")
    parser.add_argument("--quick", action="store_true", help="2 rounds × 2 s, 60,000 jobs, a 32 MiB log (~2.5 min)")
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--projects", type=int, default=10)
    parser.add_argument("--big-share", type=float, default=0.7, help="share of the pipelines in project 1")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-mib", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--secs", type=int, default=5)
    parser.add_argument("--slow-secs", type=int, default=15, help="wrk's run of an archived tail from S3")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--single", type=int, default=100, help="sequential requests per case and round")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--no-s3", action="store_true", help="leave out PG+S3 and SeaweedFS")
    parser.add_argument(
        "--incompressible-log",
        action="store_true",
        help="random bytes for the big logs instead of CI-like text: SeaweedFS keeps them uncompressed",
    )
    parser.add_argument(
        "--weed-chunk-mb",
        type=int,
        default=0,
        help="SeaweedFS's -filer.maxMB (the size it splits objects into; its default: 4); 0: its default",
    )
    parser.add_argument(
        "--pg-statements",
        action="store_true",
        help="load pg_stat_statements (with planning times) and print the top statements of the measured rounds",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.secs, args.slow_secs, args.warmup, args.single = 2, 2, 6, 1, 20
        args.jobs, args.log_mib = 60_000, 32
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    args.all_cpus = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
    if not pin_self(args.client_cpu):
        print("warning: not enough CPUs to pin server and client apart; numbers will be noisy", file=sys.stderr)
    with_s3 = not args.no_s3
    if not with_s3:
        print("# no PG+S3 deployment: --no-s3")
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    began = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            setup = set_up(args, args.dir, stack, with_s3)
            print(
                f"# set up in {setup.info['setup_seconds']} s; servers: "
                + ", ".join(f"{s.name} pid {s.proc.pid} port {s.port}" for s in setup.servers.values()),
                flush=True,
            )
            results = run_rounds(setup, args, write_wrk_script(args.dir))
            statements = statement_stats(setup.pg) if args.pg_statements else []
        problems = server_log_problems(setup)  # the servers have stopped: their logs are complete
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    report(setup, results, args, with_s3)
    print("\nserver logs: " + ", ".join(f"{name} {p['errors']} errors" for name, p in problems.items()))
    missing = {name: problem["missing_artifact_files"] for name, problem in problems.items()}
    print(f"missing artifact files logged at start: {missing}")
    for name, problem in problems.items():
        for text in problem.get("first", []):
            print(f"\n{name}:\n{text}")
    if statements:
        print("\nPostgreSQL's top statements over the measured rounds (pg_stat_statements, database bench):\n")
        print("| calls | planned | planning ms per call | execution ms per call | statement |")
        print("| --- | --- | --- | --- | --- |")
        for calls, plans, plan, execute, text in statements:
            print(f"| {calls:,} | {plans:,} | {plan:.3f} | {execute:.3f} | `{text}` |")
    print(f"whole run: {time.perf_counter() - began:.0f} s")
    if args.json:
        out = {"info": setup.info, "uploads": setup.uploads, "results": results, "server_logs": problems}
        out["pg_statements"] = statements
        out["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
