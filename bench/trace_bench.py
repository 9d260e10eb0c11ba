#!/usr/bin/env python3
"""Log appends over real HTTP: 32 running jobs, each appending 16 KiB chunks, with and without fdatasync.

    .venv/bin/python bench/trace_bench.py [--dir /tmp/jobsvc-bench/traces] [--rounds 5] [--secs 5]

A 202 on ``PATCH /jobs/:id/trace`` means the bytes are on disk: the server fdatasyncs the log before
it answers. This measures what that costs. Each round starts two servers one after the other, each
on a fresh data directory under --dir (which must be on a real disk: on tmpfs fdatasync is free):

* ``sync``: ``jobsvc serve`` as shipped;
* ``nosync``: the same server with the log's fdatasync replaced by nothing;
* ``sync6`` (only with ``--modes``): the sync, but log I/O on 6 threads (the size of asyncio's default
  executor here) instead of the store's 64, to see what many syncs in flight at once buy.

The variants are started as ``trace_bench.py --serve-variant NAME serve ...``, which patches
``jobsvc.storage.store`` and then runs the normal CLI.

Against each, 32 client tasks (one per job, one keep-alive connection each) send PATCHes of 16 KiB
at the log's end for --secs seconds, each waiting for its 202 before the next, as a runner does. It
counts appends/s and MB/s and records latency (p50, p99). The order of the two alternates between
rounds; it prints medians over rounds and the sync/nosync ratio taken within each round. The server
runs on --server-cpu and this client on --client-cpu. Every server is stopped in all cases (SIGTERM,
then SIGKILL), and each round's data directory is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import start_jobsvc, stop_process

JOBS = 32
CHUNK = 16 * 1024
USER_TOKEN = "glpat-bench-traces-0000000000"


def job_token(index: int) -> str:
    return f"glcbt-bench-trace-job-{index:08d}"


def fixture() -> dict:
    jobs = [
        {"id": 100 + i, "name": f"job-{i}", "status": "running", "token": job_token(i), "user": "root"}
        for i in range(JOBS)
    ]
    return {
        "users": [{"username": "root", "id": 1, "admin": True, "tokens": [{"token": USER_TOKEN}]}],
        "projects": [{"path": "bench/traces", "id": 1, "pipelines": [{"id": 1, "ref": "main", "jobs": jobs}]}],
    }


def start_server(data_dir: Path, fixture_path: Path, mode: str, cpu: int | None) -> tuple[subprocess.Popen, int]:
    entry = ["-m", "jobsvc"] if mode == "sync" else [str(Path(__file__).resolve()), "--serve-variant", mode]
    args = ["--data-dir", str(data_dir), "--fixtures", str(fixture_path), "--log-level", "warning"]
    return start_jobsvc(args, data_dir.parent / f"{data_dir.name}.out", cpu, entry=entry)


async def load(port: int, secs: float) -> dict:
    import aiohttp

    url = f"http://127.0.0.1:{port}/api/v4/jobs"
    chunk = os.urandom(CHUNK)
    latencies: list[float] = []
    failures: dict[int, int] = {}
    stop_at = 0.0

    async def runner(index: int, session: aiohttp.ClientSession) -> int:
        offset, count = len(b""), 0
        # the fixture's jobs start with no log
        while time.monotonic() < stop_at:
            headers = {"JOB-TOKEN": job_token(index), "Content-Range": f"{offset}-{offset + CHUNK - 1}"}
            began = time.perf_counter()
            async with session.patch(f"{url}/{100 + index}/trace", data=chunk, headers=headers) as resp:
                await resp.read()
                if resp.status != 202:
                    failures[resp.status] = failures.get(resp.status, 0) + 1
                    offset = int(resp.headers.get("Range", "0-0").split("-")[1])
                    continue
            latencies.append(time.perf_counter() - began)
            offset += CHUNK
            count += 1
        return count

    connector = aiohttp.TCPConnector(limit=JOBS)
    async with aiohttp.ClientSession(connector=connector) as session:
        # warm up every connection once (a 416 at a wrong offset: nothing written)
        await asyncio.gather(
            *(
                session.patch(
                    f"{url}/{100 + i}/trace", data=b"", headers={"JOB-TOKEN": job_token(i), "Content-Range": "0-0"}
                )
                for i in range(JOBS)
            )
        )
        began = time.monotonic()
        stop_at = began + secs
        counts = await asyncio.gather(*(runner(i, session) for i in range(JOBS)))
        elapsed = time.monotonic() - began
    latencies.sort()
    total = sum(counts)
    return {
        "appends_per_s": total / elapsed,
        "mb_per_s": total * CHUNK / elapsed / 1e6,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None,
        "appends": total,
        "failures": failures,
    }


def check_logs(data_dir: Path, appends: int) -> None:
    sizes = [(data_dir / "traces" / f"{100 + i}.log").stat().st_size for i in range(JOBS)]
    assert all(size % CHUNK == 0 for size in sizes), sizes
    assert sum(sizes) == appends * CHUNK, (sum(sizes), appends * CHUNK)


def run(args: argparse.Namespace) -> dict:
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    fixture_path = base / "fixture.yaml"
    fixture_path.write_text(yaml.safe_dump(fixture(), sort_keys=False))
    rounds: list[dict] = []
    for number in range(args.rounds):
        modes = args.modes if number % 2 == 0 else args.modes[::-1]
        result = {}
        for mode in modes:
            data_dir = base / f"round{number}-{mode}"
            shutil.rmtree(data_dir, ignore_errors=True)
            proc, port = start_server(data_dir, fixture_path, mode, args.server_cpu)
            try:
                result[mode] = asyncio.run(load(port, args.secs))
            finally:
                stop_process(proc)
            check_logs(data_dir, result[mode]["appends"])
            shutil.rmtree(data_dir, ignore_errors=True)
            print(f"round {number + 1} {mode:6}: {_fmt(result[mode])}", flush=True)
        rounds.append(result)
    keys = ("appends_per_s", "mb_per_s", "p50_ms", "p99_ms")
    summary: dict = {
        mode: {key: statistics.median(r[mode][key] for r in rounds) for key in keys} for mode in args.modes
    }
    for mode in args.modes:
        print(f"median {mode:6}: {_fmt(summary[mode])}")
    base_mode = args.modes[-1]
    for mode in args.modes[:-1]:
        ratios = [r[mode]["appends_per_s"] / r[base_mode]["appends_per_s"] for r in rounds]
        summary[f"{mode}/{base_mode}"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        print(
            f"{mode}/{base_mode} appends/s, within each round: {statistics.median(ratios):.2f} "
            f"[{min(ratios):.2f}-{max(ratios):.2f}]"
        )
    return {"rounds": rounds, "summary": summary}


def _fmt(figures: dict) -> str:
    return (
        f"{figures['appends_per_s']:8.0f} appends/s  {figures['mb_per_s']:6.1f} MB/s  "
        f"p50 {figures['p50_ms']:6.2f} ms  p99 {figures['p99_ms']:6.2f} ms"
        + (f"  non-202: {figures['failures']}" if figures.get("failures") else "")
    )


def serve_variant(variant: str, argv: list[str]) -> int:
    """The normal CLI with the store patched (for the comparison only)."""
    import concurrent.futures

    from jobsvc.cli import main
    from jobsvc.storage import store

    if variant == "nosync":
        store._datasync = lambda fd: None
    elif variant == "sync6":
        store._LOG_IO = concurrent.futures.ThreadPoolExecutor(max_workers=6)
    else:
        raise SystemExit(f"unknown variant {variant}")
    return main(argv)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-variant":
        raise SystemExit(serve_variant(sys.argv[2], sys.argv[3:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/jobsvc-bench/traces")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--secs", type=float, default=5.0)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--modes", type=lambda text: text.split(","), default=["sync", "nosync"])
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if args.client_cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.client_cpu})
    result = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
