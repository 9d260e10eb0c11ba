#!/usr/bin/env python3
"""What the access log costs: the job list on ``jobsvc serve --demo`` with no access log, the text one and the
JSON-lines one (``--access-log --access-log-format json``), in interleaved rounds, ratios within each round.

Each server is pinned to ``--server-cpu``, wrk to ``--client-cpu`` (64 connections, one thread); the log
lines go to a file, as a service manager would take them. Prints one table; exits 1 if a request failed.

    .venv/bin/python bench/accesslog_bench.py [--rounds 5] [--secs 5] [--dir /tmp/jobsvc-bench/accesslog]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TOKEN = "glpat-demo-root-000000000000"
PATH = "/api/v4/projects/1/jobs?per_page=20"
MODES = {
    "none": [],
    "text": ["--access-log"],
    "json": ["--access-log", "--access-log-format", "json"],
}


def ratios_of(mine: list[float], base: list[float]) -> list[float]:
    """Ratios within each round; a round where the base answered nothing (a stalled machine) is left out."""
    return [a / b for a, b in zip(mine, base, strict=True) if b > 0] or [float("nan")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--secs", type=float, default=5)
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/jobsvc-bench/accesslog"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    lua = common.write_wrk_script(args.dir)
    servers = {}
    try:
        for mode, flags in MODES.items():
            data = args.dir / f"data-{mode}"
            # the demo has an expired archive: with the sweeper on, the data would change during the run
            serve = ["--demo", "--data-dir", str(data), "--jobs-rate-limit", "0", "--sweep-interval", "0", *flags]
            servers[mode] = common.start_jobsvc(serve, args.dir / f"{mode}.log", args.server_cpu)
        rps: dict[str, list[float]] = {mode: [] for mode in MODES}
        bad = 0
        for number in range(args.rounds):
            order = list(MODES) if number % 2 == 0 else list(reversed(MODES))
            for mode in order:
                url = f"http://127.0.0.1:{servers[mode][1]}{PATH}"
                result = common.run_wrk(url, {"PRIVATE-TOKEN": TOKEN}, 64, args.secs, lua, args.client_cpu)
                rps[mode].append(result["rps"])
                bad += result["bad"]
    finally:
        for proc, _ in servers.values():
            common.stop_process(proc)
    lines = {mode: sum(1 for _ in (args.dir / f"{mode}.log").open(errors="replace")) for mode in MODES}
    print(f"{args.rounds} interleaved rounds of {args.secs:g} s, GET {PATH} on the demo data, 64 connections")
    print("| access log | req/s | against none | lines written |")
    print("| --- | --- | --- | --- |")
    for mode in MODES:
        ratios = ratios_of(rps[mode], rps["none"])
        against = "1.00" if mode == "none" else common.spread(ratios, 2)
        print(f"| {mode} | {common.spread(rps[mode])} | {against} | {lines[mode]:,} |")
    print(f"failed or non-2xx requests: {bad}")
    print(f"json against text: {common.spread(ratios_of(rps['json'], rps['text']), 2)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
