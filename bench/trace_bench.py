#!/usr/bin/env python3
"""What the fdatasync behind each log append costs: the same appends with and without it, in one run.

    .venv/bin/python bench/trace_bench.py [--dir DIR] [--rounds 5] [--secs 5] [--modes sync,nosync]

A 202 on ``PATCH /jobs/:id/trace`` means the bytes are on disk: the server fdatasyncs the log before it
answers. bench/run measures the appends as shipped; this compares variants, each round starting a fresh
server per mode on a fresh data directory under --dir (a real disk: on tmpfs fdatasync is free):

* ``sync``: ``jobsvc serve`` as shipped;
* ``nosync``: the same with the log's fdatasync replaced by nothing;
* ``sync6``: the sync, with log I/O on 6 threads instead of the store's 64.

The variants run as ``trace_bench.py --serve-variant NAME serve ...``, which patches ``jobsvc.storage.store``
and then runs the normal CLI. The load is bench/run's (``probes.append_load``: 32 running jobs, one client
task and connection each, 16 KiB PATCHes, each waiting for its 202), and every log is read back against the
chunks acknowledged. The order of the modes alternates between rounds; it prints medians over rounds and each
mode's ratio to the last one, taken within each round. Every server is stopped in all cases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import prepare
import probes
from common import stop_process


def run(args: argparse.Namespace) -> dict:
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    fixture = prepare.trace_fixture(base / "fixture.json")
    rounds: list[dict] = []
    for number in range(args.rounds):
        result = {}
        for mode in args.modes if number % 2 == 0 else args.modes[::-1]:
            data_dir = base / f"round{number}-{mode}"
            command = (
                None if mode == "sync" else [sys.executable, str(Path(__file__).resolve()), "--serve-variant", mode]
            )
            proc, port = probes.start_trace_server(data_dir, fixture, args.server_cpu, command=command)
            try:
                result[mode] = asyncio.run(probes.append_load(port, args.secs))
                result[mode].update(probes.read_back(port, result[mode]["acked"]))
            finally:
                stop_process(proc)
            shutil.rmtree(data_dir, ignore_errors=True)
            if not result[mode]["intact"]:
                raise SystemExit(f"{mode}: logs differ from the appends acknowledged: {result[mode]['wrong'][:3]}")
            print(f"round {number + 1} {mode:6}: {_fmt(result[mode])}", flush=True)
        rounds.append(result)
    keys = ("appends_per_s", "p50_ms", "p99_ms")
    summary: dict = {mode: {k: statistics.median(r[mode][k] for r in rounds) for k in keys} for mode in args.modes}
    for mode in args.modes:
        print(f"median {mode:6}: {_fmt(summary[mode])}")
    last = args.modes[-1]
    for mode in args.modes[:-1]:
        ratios = [r[mode]["appends_per_s"] / r[last]["appends_per_s"] for r in rounds]
        summary[f"{mode}/{last}"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        print(
            f"{mode}/{last} appends/s, within each round: "
            f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
        )
    return {"rounds": rounds, "summary": summary}


def _fmt(figures: dict) -> str:
    return (
        f"{figures['appends_per_s']:8.0f} appends/s  p50 {figures['p50_ms']:6.2f} ms  p99 {figures['p99_ms']:6.2f} ms"
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
    parser.add_argument("--dir", default=str(prepare.root() / "traces"))
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
