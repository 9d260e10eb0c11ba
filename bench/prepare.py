"""bench/run's data, made once and reused: under $JOBSVC_BENCH_DIR, or bench/.data (git-ignored).

* ``jobs/``: gen_jobs_db.py's data directory: 1,000,000 jobs in 1,000 projects, project 1 with ~200,000 of
  them, every archive row with its file, archives expiring 100 years after their job (so the sweeper has
  nothing to take); and ``facts.json``: the URLs' ids (the cursor 90 % deep, a pipeline of project 1 with
  ≥ 20 jobs, the project nearest to 2,000 jobs, the deep page's archive count).
* ``artifacts/``: gen_artifacts.py's files (a 1 GiB archive of 10,000 entries with a deflated and a stored
  100 MiB entry, a 500 MiB log) loaded by ``jobsvc load`` (in its own process) into ``artifacts/store``.
* ``npm/``: Prism and json-server (refs.ensure_npm).

Each part is made again when its marker file is missing or names another DATA_VERSION.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gen_artifacts
import gen_jobs_db

from jobsvc.http.pagination import encode_cursor

DATA_VERSION = 1
HERE = Path(__file__).resolve().parent
SMALL_PROJECT_JOBS = 2_000
DEEP_SHARE = 0.9
BIG_JOB = 1  # the artifacts fixture's job with the 1 GiB archive and the 500 MiB log
DEFLATED_MEMBER, STORED_MEMBER = "logs/big.log", "logs/stored.log"


def root() -> Path:
    return Path(os.environ.get("JOBSVC_BENCH_DIR") or HERE / ".data").resolve()


def _ready(marker: Path) -> dict | None:
    if not marker.exists():
        return None
    facts = json.loads(marker.read_text())
    return facts if facts.get("data_version") == DATA_VERSION else None


def _cached(marker: Path, what: str, make: Callable[[], dict]) -> dict:
    """The facts in ``marker``, or, when it is missing or of another DATA_VERSION, ``make()``'s, written there."""
    facts = _ready(marker)
    if facts is None:
        began = time.perf_counter()
        print(f"# making {what} in {marker.parent}", flush=True)
        facts = {"data_version": DATA_VERSION, **make(), "seconds": 0.0}
        facts["seconds"] = round(time.perf_counter() - began, 1)
        marker.write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def jobs_data(base: Path) -> tuple[Path, dict]:
    """The 1M-job data directory and its facts (made first if needed, in about 35 s)."""
    folder = base / "jobs"

    def make() -> dict:
        return _url_facts(folder / gen_jobs_db.DB_NAME, gen_jobs_db.generate(folder))

    return folder, _cached(folder / "facts.json", "the 1,000,000-job data directory (about 35 s)", make)


def _url_facts(db: Path, info: dict) -> dict:
    project, n = info["big_project"], info["big_project_jobs"]
    counts = {int(p): c for p, c in info["project_jobs"].items()}
    small = min((p for p in counts if p != project), key=lambda p: abs(counts[p] - SMALL_PROJECT_JOBS))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        deep_after = con.execute(
            "SELECT id FROM jobs WHERE project_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?", (project, int(n * DEEP_SHARE))
        ).fetchone()[0]
        deep_ids = [
            row[0]
            for row in con.execute(
                "SELECT id FROM jobs WHERE project_id = ? AND id < ? ORDER BY id DESC LIMIT 20", (project, deep_after)
            )
        ]
        marks = ",".join("?" * len(deep_ids))
        deep_archives = con.execute(
            f"SELECT count(*) FROM job_artifacts WHERE file_type = 'archive' AND job_id IN ({marks})", deep_ids
        ).fetchone()[0]
        pipeline = con.execute(
            "SELECT pipeline_id FROM jobs WHERE project_id = ? GROUP BY pipeline_id HAVING count(*) >= 20 "
            "ORDER BY pipeline_id DESC LIMIT 1",
            (project,),
        ).fetchone()[0]
        one_job = con.execute(
            "SELECT id FROM jobs WHERE project_id = ? AND status = 'success' ORDER BY id DESC LIMIT 1", (project,)
        ).fetchone()[0]
    return {
        "admin_token": info["admin_token"],
        "jobs": info["jobs"],
        "job_artifacts": info["job_artifacts"],
        "big_project": project,
        "big_project_jobs": n,
        "small_project": small,
        "small_project_jobs": counts[small],
        "deep_cursor": encode_cursor(deep_after),
        "deep_ids": deep_ids,
        "deep_archives": deep_archives,
        "pipeline": pipeline,
        "one_job": one_job,
    }


def artifacts_data(base: Path) -> tuple[Path, dict]:
    """The artifacts store (the fixture loaded) and its facts: the manifest, the stored files' paths."""
    folder = base / "artifacts"

    def make() -> dict:
        manifest = gen_artifacts.generate(folder, force=True)
        load = [
            sys.executable,
            "-m",
            "jobsvc",
            "load",
            str(folder / "fixture.yaml"),
            "--data-dir",
            str(folder / "store"),
        ]
        done = subprocess.run(load, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"jobsvc load failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        paths = {name: str(path) for name, path in _store_paths(folder / "store").items()}
        return {"token": manifest["token"], "manifest": manifest, "paths": paths}

    facts = _cached(folder / "loaded.json", "the 1 GiB archive and the 500 MiB log (about 45 s)", make)
    return folder / "store", facts


def _store_paths(store: Path) -> dict[str, Path]:
    """Where the loader put job 1's archive and log."""
    with sqlite3.connect(f"file:{store / 'jobsvc.sqlite3'}?mode=ro", uri=True) as con:
        row = con.execute(
            "SELECT store_key FROM job_artifacts WHERE file_type = 'archive' AND job_id = ?", (BIG_JOB,)
        ).fetchone()
    if row is None:
        raise SystemExit(f"the store in {store} does not hold job {BIG_JOB}'s archive")
    return {"big.zip": store / row[0], "big.log": store / "traces" / f"{BIG_JOB}.log"}


TRACE_JOBS = 32
TRACE_USER_TOKEN = "glpat-bench-traces-0000000000"


def trace_job_token(index: int) -> str:
    return f"glcbt-bench-trace-job-{index:08d}"


def trace_fixture(path: Path) -> Path:
    """A fixture of 32 running jobs (ids 100..131), each with its job token, and an admin to read the logs."""
    jobs = [
        {"id": 100 + i, "name": f"job-{i}", "status": "running", "token": trace_job_token(i), "user": "root"}
        for i in range(TRACE_JOBS)
    ]
    fixture = {
        "users": [{"username": "root", "id": 1, "admin": True, "tokens": [{"token": TRACE_USER_TOKEN}]}],
        "projects": [{"path": "bench/traces", "id": 1, "pipelines": [{"id": 1, "ref": "main", "jobs": jobs}]}],
    }
    path.write_text(json.dumps(fixture, indent=1) + "\n")
    return path
