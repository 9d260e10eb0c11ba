#!/usr/bin/env python3
"""The storage deployments compared over HTTP: SQLite + a directory against PostgreSQL (+ S3), and two processes.

    .venv/bin/python bench/storage_bench.py [--quick] [--rounds 5] [--secs 5] [--json FILE]

In one run, with interleaved rounds, it measures

* (a) ``GET /api/v4/projects/1/jobs?per_page=20`` (admin token, full job entities) and
* (b) ``GET /api/v4/projects/2/jobs/:id/trace`` with ``Range: bytes=-65536`` of a big log,

on each deployment, every one of them running the whole time and measured one at a time:

* ``sqlite``: ``jobsvc serve --data-dir D`` (SQLite and the file store in D);
* ``pg``: ``--database-url postgresql://…`` with the file store in its own data directory;
* ``pg+s3``: ``--database-url`` and ``--store-url s3://bucket/jobsvc?endpoint_url=…`` (SeaweedFS), only when
  ``jobsvc serve --help`` offers ``--store-url`` (else the run says so and leaves those rows out);
* (c) ``pg×2``: a second ``jobsvc serve`` on the same database and data directory, and one wrk per process
  with half the connections each, their requests added up (jobsvc binds without SO_REUSEPORT, so two
  processes on one address need a proxy in front; the two wrk runs stand for it);
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
and full_page_writes on. The big log reaches every deployment through the runner API (PATCHes, then
``PUT state=success``), so each stores it its own way. Before every round each server is checked: the page
has the expected 20 job ids and artifacts and the same JSON on every deployment, and the tail is the log's
last 65,536 bytes with the right Content-Range. Every process started is stopped in all cases.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
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

TAIL = 65536
BUCKET_PREFIX = "jobsvc"
LIST, TRACE = "list", "tail"
PINNED, WHOLE = "pinned", "whole machine"
TWO = "pg×2"
LIMITED = ("sqlite+limit", "pg+limit")
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

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.servers.values()] + list(self.backing_pids.values())


def store_url_supported() -> bool:
    done = subprocess.run([sys.executable, "-m", "jobsvc", "serve", "--help"], capture_output=True, text=True)
    return "--store-url" in done.stdout


# --- checks -----------------------------------------------------------------------------------------


def list_path(info: dict) -> str:
    return f"/api/v4/projects/{info['big_project']}/jobs?per_page=20"


def trace_path(info: dict) -> str:
    return f"/api/v4/projects/{info['trace_project']}/jobs/{info['trace_job']}/trace"


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
        conn.request("GET", trace_path(info), headers={**headers, "Range": f"bytes=-{TAIL}"})
        response = conn.getresponse()
        tail = response.read()
        expected_range = f"bytes {setup.log_size - TAIL}-{setup.log_size - 1}/{setup.log_size}"
        if response.status != 206 or tail != setup.tail or response.getheader("Content-Range") != expected_range:
            raise SystemExit(
                f"{server.name}: the tail is wrong: {response.status}, {len(tail)} bytes, "
                f"Content-Range {response.getheader('Content-Range')!r} (expected {expected_range!r})"
            )
    finally:
        conn.close()


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


def send_log(server: Server, info: dict, chunks: list[bytes]) -> dict:
    """The big log through the runner API: PATCHes at its end, then ``PUT state=success``; the seconds each took."""
    job, token = info["trace_job"], info["trace_job_token"]
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
        weed = SeaweedS3(run / "seaweedfs", args.server_cpu)
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
        start(
            "pg+s3",
            ["--data-dir", str(run / "pg-s3"), "--database-url", pg.dsn_for("bench_s3"), "--store-url", url],
            env,
        )

    chunks = list(storage_data.log_chunks(args.log_mib))
    whole = b"".join(chunks)
    setup = Setup(info, servers, whole[-TAIL:], len(whole), backing, pg)
    for name in ("sqlite", "pg", "pg+s3"):
        if name in servers:
            setup.uploads[name] = send_log(servers[name], info, chunks)
            print(f"# {name}: log of {args.log_mib} MiB sent: {setup.uploads[name]}", flush=True)
    for server in servers.values():
        check_server(setup, server)
    info["setup_seconds"] = round(time.perf_counter() - began, 1)
    return setup


# --- measuring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    kind: str  # LIST or TRACE
    target: str  # a server's name, or TWO
    placement: str  # PINNED or WHOLE

    @property
    def key(self) -> str:
        return f"{self.kind} {self.target} {self.placement}"


def cases(setup: Setup) -> list[Case]:
    singles = [name for name in ("sqlite", "pg", "pg+s3") if name in setup.servers]
    found = [Case(kind, target, PINNED) for kind in (LIST, TRACE) for target in (*singles, TWO)]
    found += [Case(LIST, target, PINNED) for target in LIMITED]
    found += [Case(kind, target, WHOLE) for kind in (LIST, TRACE) for target in ("sqlite", "pg", TWO)]
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process tree (every thread), from /proc."""
    total = 0.0
    for each in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def cpu_groups(setup: Setup, case: Case) -> dict[str, list[int]]:
    names = ["pg", "pg-b"] if case.target == TWO else [case.target]
    groups = {"jobsvc": [setup.servers[n].proc.pid for n in names]}
    if not case.target.startswith("sqlite"):
        groups["postgres"] = [setup.backing_pids["postgres"]]
    if case.target == "pg+s3":
        groups["weed"] = [setup.backing_pids["weed"]]
    return groups


def measure(setup: Setup, case: Case, args: argparse.Namespace, lua: Path, secs: float) -> dict:
    info = setup.info
    path = list_path(info) if case.kind == LIST else trace_path(info)
    headers = {"PRIVATE-TOKEN": info["admin_token"]}
    if case.kind == TRACE:
        headers["Range"] = f"bytes=-{TAIL}"
    cpus = args.client_cpu if case.placement == PINNED else args.all_cpus
    groups = cpu_groups(setup, case)
    before = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
    if case.target == TWO:
        urls = [f"http://127.0.0.1:{setup.servers[n].port}{path}" for n in ("pg", "pg-b")]
        result = run_wrks(urls, headers, args.conns // 2, secs, lua, cpus)
    else:
        result = run_wrk(
            f"http://127.0.0.1:{setup.servers[case.target].port}{path}", headers, args.conns, secs, lua, cpus
        )
    spent = {name: sum(cpu_seconds(pid) for pid in pids) - before[name] for name, pids in groups.items()}
    result["cpu_ms_per_request"] = {name: 1000 * s / max(1, result["requests"]) for name, s in spent.items()}
    return result


def latency(setup: Setup, case: Case, n: int) -> tuple[float, float]:
    server = setup.servers[case.target]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    headers = {"PRIVATE-TOKEN": setup.info["admin_token"]}
    try:
        if case.kind == LIST:
            return single(conn, list_path(setup.info), headers, n, check=page_ok(setup.info))
        return single(
            conn, trace_path(setup.info), {**headers, "Range": f"bytes=-{TAIL}"}, n, check=tail_ok(setup.tail)
        )
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
        order = (PINNED, WHOLE) if number % 2 == 0 else (WHOLE, PINNED)
        for placement in order:
            place(setup, placement, args)
            block = blocks[placement]
            shift = number % len(block)
            for case in block[shift:] + block[:shift]:
                time.sleep(0.3)  # what the last wrk left queued is done
                entry = results[case.key]
                if case.placement == PINNED and case.target != TWO:
                    entry["single"].append(latency(setup, case, args.single))
                load = measure(setup, case, args, lua, args.secs)
                entry["load"].append(load)
                lat = f"  single p50 {entry['single'][-1][0]:.2f} ms" if entry["single"] else ""
                cpu = " ".join(f"{k} {v:.2f}" for k, v in load["cpu_ms_per_request"].items())
                print(
                    f"round {number + 1} {case.key:28} {load['rps']:8,.0f} req/s  p50 {load['p50']:6.2f} ms  "
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
        f"\nwrk {args.conns} connections (pg×2: {args.conns // 2} to each process), {rounds} interleaved rounds × "
        f"{args.secs:g} s; medians [min–max] over rounds; ratios taken within each round\n"
    )
    for placement in (PINNED, WHOLE):
        base = "sqlite"
        print(f"\n{placement}:\n")
        print(
            "| request | deployment | req/s | vs sqlite | vs pg | wrk p50 / p99 ms | single p50 / p99 ms "
            "| CPU ms per request | bad |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for kind in (LIST, TRACE):
            for target in ("sqlite", "sqlite+limit", "pg", "pg+limit", "pg+s3", TWO):
                key = f"{kind} {target} {placement}"
                if key not in results:
                    continue
                loads, singles = results[key]["load"], results[key]["single"]
                vs_sqlite = ratios(results, key, f"{kind} {base} {placement}")
                vs_pg = ratios(results, key, f"{kind} pg {placement}")
                cpu = {
                    name: statistics.median(load["cpu_ms_per_request"][name] for load in loads)
                    for name in loads[0]["cpu_ms_per_request"]
                }
                lat = (
                    f"{statistics.median(s[0] for s in singles):.2f} / {statistics.median(s[1] for s in singles):.2f}"
                    if singles
                    else ""
                )
                print(
                    f"| {kind} | {target} | {spread([x['rps'] for x in loads])} | {spread(vs_sqlite, 2)} "
                    f"| {spread(vs_pg, 2)} | {statistics.median(x['p50'] for x in loads):.1f} / "
                    f"{statistics.median(x['p99'] for x in loads):.1f} | {lat} | "
                    + ", ".join(f"{name} {ms:.2f}" for name, ms in cpu.items())
                    + f" | {sum(x['bad'] for x in loads)} |"
                )
    for limited in LIMITED:
        without = limited.split("+")[0]
        per_round = ratios(results, f"{LIST} {limited} {PINNED}", f"{LIST} {without} {PINNED}")
        print(f"\n{limited} / {without}, job list, pinned: {spread(per_round, 2)} per round")
    print("\nthe log sent through the runner API, once per deployment:\n")
    for name, upload in setup.uploads.items():
        mib = upload["bytes"] / 2**20
        print(
            f"* {name}: {mib:.0f} MiB in PATCHes of 8 MiB: {upload['append_s']:.2f} s "
            f"({mib / upload['append_s']:.0f} MiB/s); PUT state=success (archives the log): {upload['finish_s']:.2f} s"
        )
    if not with_s3:
        print("\nno PG+S3 rows: this jobsvc's `serve --help` has no --store-url")


def server_log_problems(setup: Setup) -> dict[str, dict[str, int]]:
    """Per server: lines with ERROR or Traceback, the start-up ones about missing artifact files counted apart."""
    found = {}
    for server in setup.servers.values():
        lines = server.log.read_text(errors="replace").splitlines()
        missing = sum("is missing; its downloads answer 404" in line for line in lines)
        errors = sum(("ERROR" in line or "Traceback" in line) and "is missing;" not in line for line in lines)
        found[server.name] = {"errors": errors, "missing_artifact_files": missing}
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
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--single", type=int, default=100, help="sequential requests per case and round")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--no-s3", action="store_true", help="leave out PG+S3 even where --store-url exists")
    parser.add_argument(
        "--pg-statements",
        action="store_true",
        help="load pg_stat_statements (with planning times) and print the top statements of the measured rounds",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.secs, args.warmup, args.single = 2, 2, 1, 20
        args.jobs, args.log_mib = 60_000, 32
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    args.all_cpus = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
    if not pin_self(args.client_cpu):
        print("warning: not enough CPUs to pin server and client apart; numbers will be noisy", file=sys.stderr)
    with_s3 = not args.no_s3 and store_url_supported()
    if not with_s3:
        print("# no PG+S3 deployment: " + ("--no-s3" if args.no_s3 else "`jobsvc serve --help` has no --store-url"))
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
    print(f"\nserver logs: {problems}")
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
