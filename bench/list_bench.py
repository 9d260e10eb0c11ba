#!/usr/bin/env python3
"""HTTP benchmark of the job list: first page vs deep keyset page vs deep OFFSET page, and friends.

    .venv/bin/python bench/list_bench.py [--data-dir /tmp/jobsvc-bench/data] [--rounds 5] [--secs 5]

Starts ``jobsvc serve`` on the data directory made by gen_jobs_db.py (loopback, a free port,
rate limit off, pinned to --server-cpu), checks every URL once, measures single-request latency
(sequential keep-alive requests from this process, pinned to --client-cpu) and throughput with
wrk (pinned to --client-cpu, --conns connections), all URLs in each of --rounds interleaved rounds,
and prints medians over the rounds. Without wrk, an aiohttp client loop in this process makes the
load (a slower client: compare only within one run). The server is stopped in all cases
(SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import WRK_REPORT, get, run_wrk, single, start_jobsvc, stop_process

from jobsvc.http.pagination import decode_cursor, encode_cursor


def variants(con: sqlite3.Connection, info: dict) -> dict[str, str]:
    """name -> path; the deep cursor sits at 90 % of the big project's jobs, the shallow one at 1 %."""
    project, n = info["big_project"], info["big_project_jobs"]

    def cursor_at(share: float) -> str:
        last = con.execute(
            "SELECT id FROM jobs WHERE project_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?", (project, int(n * share))
        ).fetchone()[0]
        return quote(encode_cursor(last), safe="")

    deep_failed = con.execute(
        "SELECT id FROM jobs WHERE project_id = ? AND status = 'failed' ORDER BY id DESC "
        "LIMIT 1 OFFSET (SELECT count(*) * 9 / 10 FROM jobs WHERE project_id = ? "
        "AND status = 'failed')",
        (project, project),
    ).fetchone()[0]
    pipeline = con.execute(
        "SELECT pipeline_id FROM jobs WHERE project_id = ? GROUP BY pipeline_id "
        "HAVING count(*) >= 20 ORDER BY pipeline_id DESC LIMIT 1",
        (project,),
    ).fetchone()[0]
    jobs = f"/api/v4/projects/{project}/jobs?per_page=20"
    return {
        "version (auth + tiny body)": "/api/v4/version",
        "page 1 (offset)": jobs,
        "page 1 (keyset)": f"{jobs}&pagination=keyset",
        "keyset at 1 %": f"{jobs}&pagination=keyset&cursor={cursor_at(0.01)}",
        "deep keyset (90 %)": f"{jobs}&pagination=keyset&cursor={cursor_at(0.9)}",
        "deep offset (page 2500)": f"{jobs}&page=2500",
        "scope[]=failed page 1": f"{jobs}&scope%5B%5D=failed",
        "scope[]=failed deep keyset": f"{jobs}&scope%5B%5D=failed&pagination=keyset"
        f"&cursor={quote(encode_cursor(deep_failed), safe='')}",
        "pipeline jobs": f"/api/v4/projects/{project}/pipelines/{pipeline}/jobs?per_page=20",
    }


def start_server(data_dir: Path, cpu: int | None, log: Path) -> tuple[subprocess.Popen, int]:
    """``jobsvc serve`` on the data directory, rate limit off; it and its port."""
    args = ["--data-dir", str(data_dir), "--jobs-rate-limit", "0", "--log-level", "warning"]
    return start_jobsvc(args, log, cpu)


def check(conn: http.client.HTTPConnection, name: str, path: str, headers: dict) -> None:
    status, body, response = get(conn, path, headers)
    data = json.loads(body)
    if status != 200 or (isinstance(data, list) and len(data) != 20):
        raise SystemExit(f"{name}: {status} with {len(data)} items: {body[:300]!r}")
    if name == "page 1 (keyset)":  # the cursor format the deep URLs are built with must be the server's
        link = response.getheader("Link", "")
        cursor = parse_qs(urlsplit(link.strip("<").split(">")[0]).query).get("cursor", [""])[0]
        if decode_cursor(cursor) != data[-1]["id"]:
            raise SystemExit(f"keyset Link does not continue after id {data[-1]['id']}: {link}")


async def aiohttp_load(url: str, token: str, conns: int, secs: float) -> dict:
    import aiohttp

    latencies, non2xx = [], 0
    deadline = time.perf_counter() + secs

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal non2xx
        while (began := time.perf_counter()) < deadline:
            async with session.get(url, headers={"PRIVATE-TOKEN": token}) as response:
                await response.read()
                non2xx += not 200 <= response.status < 300
            latencies.append((time.perf_counter() - began) * 1000)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conns)) as session:
        await asyncio.gather(*(worker(session) for _ in range(conns)))
    latencies.sort()
    return {
        "rps": len(latencies) / secs,
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99)],
        "errors": 0,
        "non2xx": non2xx,
    }


def med(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}–{max(values):,.0f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/jobsvc-bench/data"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--secs", type=float, default=5)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--single", type=int, default=100, help="sequential requests per URL and round")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    info = json.loads((args.data_dir / "bench.json").read_text())
    with sqlite3.connect(f"file:{args.data_dir / 'jobsvc.sqlite3'}?mode=ro", uri=True) as con:
        urls = variants(con, info)
    token = info["admin_token"]
    headers = {"PRIVATE-TOKEN": token}
    use_wrk = shutil.which("wrk") is not None
    if os.cpu_count() and os.cpu_count() > max(args.server_cpu, args.client_cpu):
        os.sched_setaffinity(0, {args.client_cpu})
    else:
        print("warning: not enough CPUs to pin server and client apart; numbers will be noisy", file=sys.stderr)
    results: dict = {
        "info": info,
        "urls": urls,
        "single": {name: [] for name in urls},
        "load": {name: [] for name in urls},
        "client": "wrk" if use_wrk else "aiohttp",
        "conns": args.conns,
        "secs": args.secs,
    }
    with tempfile.TemporaryDirectory(prefix="jobsvc-bench-") as tmp:
        lua = Path(tmp) / "report.lua"
        lua.write_text(WRK_REPORT)
        proc, port = start_server(args.data_dir, args.server_cpu, Path(tmp) / "server.log")
        try:
            base = f"http://127.0.0.1:{port}"
            print(f"# server pid {proc.pid} on {base}; client: {results['client']}", flush=True)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for name, path in urls.items():
                check(conn, name, path, headers)

            def measure(path: str, secs: float) -> dict:
                if use_wrk:
                    return run_wrk(base + path, headers, args.conns, secs, lua, args.client_cpu)
                return asyncio.run(aiohttp_load(base + path, token, args.conns, secs))

            for path in urls.values():  # warm-up, unmeasured
                single(conn, path, headers, 50)
                measure(path, 1)
            for round_no in range(1, args.rounds + 1):
                # abandoned requests keep running (aiohttp's handler_cancellation is off)
                time.sleep(1)  # let the server finish what the last wrk run left queued
                for name, path in urls.items():
                    results["single"][name].append(single(conn, path, headers, args.single))
                for name, path in urls.items():
                    load = measure(path, args.secs)
                    results["load"][name].append(load)
                    p50, p99 = results["single"][name][-1]
                    print(
                        f"round {round_no} {name:28} {load['rps']:8,.0f} req/s  p50 {load['p50']:6.2f} ms  "
                        f"p99 {load['p99']:6.2f} ms  errors {load['errors']} non2xx {load['non2xx']}  "
                        f"single p50 {p50:.2f} p99 {p99:.2f} ms",
                        flush=True,
                    )
            conn.close()
        finally:
            stop_process(proc)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def report(results: dict) -> None:
    load, single = results["load"], results["single"]
    names = list(load)
    reference, page1, deep = names[0], "page 1 (offset)", "deep keyset (90 %)"

    def single_ms(name: str, column: int) -> float:
        return statistics.median(run[column] for run in single[name])

    def ratio(name: str, base: str) -> list[float]:
        return [a["rps"] / b["rps"] for a, b in zip(load[name], load[base], strict=True)]

    print(
        f"\n{results['client']}, {results['conns']} connections, {len(load[page1])} interleaved rounds × "
        f"{results['secs']:g} s; medians [min–max] over rounds; ratios taken within each round\n"
    )
    print("| request | req/s | p50 ms | p99 ms | vs page 1 | vs version | single p50 / p99 ms | non-2xx |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        runs = load[name]
        print(
            f"| {name} | {med([r['rps'] for r in runs])} | {statistics.median(r['p50'] for r in runs):.1f} "
            f"| {statistics.median(r['p99'] for r in runs):.1f} | {statistics.median(ratio(name, page1)):.2f} "
            f"| {statistics.median(ratio(name, reference)):.2f} | {single_ms(name, 0):.2f} / {single_ms(name, 1):.2f} "
            f"| {sum(r['non2xx'] + r['errors'] for r in runs)} |"
        )
    for base in (page1, "keyset at 1 %"):
        per_round = ratio(deep, base)
        print(
            f"\ndeep keyset / {base} throughput: {statistics.median(per_round):.2f} "
            f"[{min(per_round):.2f}–{max(per_round):.2f}] per round; single-request p50 latency ratio "
            f"{single_ms(deep, 0) / single_ms(base, 0):.2f}"
        )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
