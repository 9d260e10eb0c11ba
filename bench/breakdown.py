#!/usr/bin/env python3
"""Where one GET /projects/:id/jobs request spends its time, in process (no HTTP).

    taskset -c 0 .venv/bin/python bench/breakdown.py [--data-dir DIR (default: bench/run's 1M-job data)] [--reps 300]

Runs the steps the handler runs, through the real jobsvc.storage.db.Database (aiosqlite), Repository,
entities and orjson, on the database made by gen_jobs_db.py; prints the median µs of each step.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import orjson
import prepare

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jobsvc.domain.timefmt import utcnow
from jobsvc.http import entities
from jobsvc.storage.db import Database
from jobsvc.storage.repo import Repository


async def run(data_dir: Path, reps: int) -> dict[str, float]:
    info = json.loads((data_dir / "bench.json").read_text())
    db = Database(data_dir / "jobsvc.sqlite3")
    await db.open()
    try:
        repo, project = Repository(db), info["big_project"]
        digest = hashlib.sha256(info["admin_token"].encode()).hexdigest()
        deep_row = await db.fetchone(
            "SELECT id FROM jobs WHERE project_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            (project, int(info["big_project_jobs"] * 0.9)),
        )
        assert deep_row is not None
        deep_after = deep_row["id"]
        steps = {
            "token lookup (aiosqlite)": lambda: repo.token_by_digest(digest),
            "project lookup (aiosqlite)": lambda: repo.project_by_id(project, 1),
            "jobs page 1 query (aiosqlite)": lambda: repo.project_jobs(project, [], limit=20),
            "jobs deep keyset query (aiosqlite)": lambda: repo.project_jobs(project, [], limit=20, after=deep_after),
            "jobs deep offset query, page 2500": lambda: repo.project_jobs(project, [], limit=20, offset=49_980),
        }
        samples: dict[str, list[float]] = {
            name: [] for name in [*steps, "20 deep rows -> dicts (entities.JobPresenter)", "orjson.dumps of the page"]
        }
        for _ in range(reps):
            results = {}
            for name, step in steps.items():
                began = time.perf_counter()
                results[name] = await step()
                samples[name].append(time.perf_counter() - began)
            rows = results["jobs deep keyset query (aiosqlite)"].rows
            began = time.perf_counter()
            present = entities.JobPresenter("http://127.0.0.1:8080", utcnow())
            body = [present(row) for row in rows]
            samples["20 deep rows -> dicts (entities.JobPresenter)"].append(time.perf_counter() - began)
            began = time.perf_counter()
            orjson.dumps(body)
            samples["orjson.dumps of the page"].append(time.perf_counter() - began)
        return {name: statistics.median(values) * 1e6 for name, values in samples.items()}
    finally:
        await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=prepare.root() / "jobs")
    parser.add_argument("--reps", type=int, default=300)
    args = parser.parse_args()
    print("| step | median µs |\n| --- | --- |")
    for name, micros in asyncio.run(run(args.data_dir, args.reps)).items():
        print(f"| {name} | {micros:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
