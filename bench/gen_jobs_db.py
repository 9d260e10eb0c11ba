#!/usr/bin/env python3
"""Fill a fresh jobsvc data directory with a large job history, fast (stdlib sqlite3, no server).

    .venv/bin/python bench/gen_jobs_db.py --out /tmp/jobsvc-bench/data [--jobs 1000000] [--projects 1000]

The database is made by applying the migrations of the real schema.sql (jobsvc.storage.db), so the
benchmark follows the shipped DDL and indexes. Pipelines are created in time order, each in a
randomly chosen project (project 1 gets --big-share of them), so one project's jobs are spread
over the whole table as in a real instance. Then ANALYZE. Every archive row gets a file (hard links of
one small zip), so a server starting on the data finds none missing. Facts the other scripts need
(tokens, ids, job counts per project) are written to DIR/bench.json, last.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jobsvc.storage.db import migrations, schema_path

DB_NAME = "jobsvc.sqlite3"  # jobsvc.settings.Config.db_path
ADMIN_TOKEN = "glpat-bench-admin-0000000000"
MEMBER_TOKEN = "glpat-bench-member-000000000"
MEMBER_USER_ID = 2
N_USERS = 101  # root (admin) + 100 users, user k a member of the projects with id % 100 == k - 2
N_RUNNERS = 10
START = 1_640_995_200  # 2022-01-01T00:00:00Z; pipelines are ~20 minutes apart from here
# Archives expire 100 years after their job: a running server's sweeper (every 60 s) deletes expired artifacts,
# and it would change the data under a benchmark. (Before, they expired after 30 days, in 2022.)
ARTIFACTS_EXPIRE_AFTER = 100 * 365 * 86_400
LINKS_PER_FILE = 50_000
STAGES = (
    ("build", "compile"),
    ("test", "rspec 1/3"),
    ("test", "rspec 2/3"),
    ("test", "rspec 3/3"),
    ("test", "lint"),
    ("test", "unit"),
    ("deploy", "docker"),
    ("deploy", "pages"),
)
FATES = ("success", "failed", "canceled", "skipped", "manual")
FATE_WEIGHTS = (76, 14, 5, 3, 2)
ACTIVE = ("running", "pending", "created", "success")  # jobs of the newest pipelines
SCRIPT, VARIABLES, TAGS = '["bundle exec rake test"]', "{}", '["docker","linux"]'


def utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def job_status(rng: random.Random, fate: str) -> str:
    r = rng.random()
    if fate == "success":
        return "success" if r < 0.95 else ("skipped" if r < 0.98 else "manual")
    if fate == "failed":
        return "success" if r < 0.7 else ("failed" if r < 0.85 else ("skipped" if r < 0.95 else "canceled"))
    if fate == "canceled":
        return "success" if r < 0.5 else "canceled"
    return fate  # skipped, manual


def create_schema(con: sqlite3.Connection) -> None:
    for version, script in migrations(schema_path().read_text(encoding="utf-8")):
        con.executescript(script)
        con.execute(f"PRAGMA user_version = {version}")


def fill_static(con: sqlite3.Connection, n_projects: int) -> None:
    t0 = utc(START - 86_400)
    users = [(1, "root", "Administrator", "admin@example.com", 1, t0)]
    users += [(k, f"user{k - 1}", f"User {k - 1}", f"user{k - 1}@example.com", 0, t0) for k in range(2, N_USERS + 1)]
    con.executemany("INSERT INTO users (id, username, name, email, admin, created_at) VALUES (?, ?, ?, ?, ?, ?)", users)
    tokens = {1: ADMIN_TOKEN, MEMBER_USER_ID: MEMBER_TOKEN}  # the others: unused tokens, for realistic index statistics
    con.executemany(
        "INSERT INTO personal_access_tokens (user_id, name, digest, scopes, created_at) VALUES (?, 'bench', ?, ?, ?)",
        [
            (uid, hashlib.sha256(tokens.get(uid, f"glpat-bench-unused-{uid:010d}").encode()).hexdigest(), '["api"]', t0)
            for uid in range(1, N_USERS + 1)
        ],
    )
    con.executemany(
        """INSERT INTO projects (id, path_with_namespace, name, description, visibility, created_at, last_activity_at)
           VALUES (?, ?, ?, '', ?, ?, ?)""",
        [
            (
                p,
                f"group-{p // 50}/project-{p}",
                f"project-{p}",
                "public" if p % 25 == 0 else ("internal" if p % 10 == 0 else "private"),
                t0,
                t0,
            )
            for p in range(1, n_projects + 1)
        ],
    )
    con.executemany(
        "INSERT INTO members (project_id, user_id, access_level) VALUES (?, ?, ?)",
        [(p, p % 100 + 2, (20, 30, 40)[p % 3]) for p in range(1, n_projects + 1)],
    )
    con.executemany(
        "INSERT INTO runners (id, description, is_shared, created_at, contacted_at) VALUES (?, ?, 1, ?, ?)",
        [(r, f"shared-runner-{r}", t0, t0) for r in range(1, N_RUNNERS + 1)],
    )


def fill_history(
    con: sqlite3.Connection, n_jobs: int, n_projects: int, big_share: float, seed: int, active_jobs: int | None = None
) -> dict:
    """Pipelines in time order with ~25 jobs each; returns per-project job counts and a sample pipeline.

    The newest ``active_jobs`` jobs (default: max(500, n_jobs / 500)) are still running, pending or created."""
    rng = random.Random(seed)
    others = [1 / (rank**0.5) for rank in range(1, n_projects)]  # a mild skew among projects 2..n
    scale = (1 - big_share) / sum(others) if others else 0
    weights = [big_share if n_projects > 1 else 1.0] + [w * scale for w in others]
    projects = list(range(1, n_projects + 1))
    iids = [0] * (n_projects + 1)
    counts = [0] * (n_projects + 1)
    pipelines, commits, jobs, artifacts = [], [], [], []
    job_id = pipeline_id = 0
    sample_pipeline = None
    active_from = n_jobs - (max(500, n_jobs // 500) if active_jobs is None else active_jobs)

    def flush() -> None:
        con.executemany(
            """INSERT INTO commits (project_id, sha, title, message, author_name, author_email, authored_date,
                   committer_name, committer_email, committed_date, created_at, parent_ids)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            commits,
        )
        con.executemany(
            """INSERT INTO pipelines (id, iid, project_id, ref, sha, tag, source, status, user_id, created_at,
                   updated_at, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            pipelines,
        )
        con.executemany(
            """INSERT INTO jobs (id, project_id, pipeline_id, name, stage, stage_idx, status, "when", allow_failure,
                   failure_reason, coverage, user_id, runner_id, retried, script, variables, tags, created_at,
                   updated_at, queued_at, started_at, finished_at, artifacts_expire_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            jobs,
        )
        con.executemany(
            """INSERT INTO job_artifacts (job_id, project_id, file_type, file_format, filename, size, sha256,
                   store_key, expire_at, created_at) VALUES (?, ?, 'archive', 'zip', 'artifacts.zip', ?, ?, ?, ?, ?)""",
            artifacts,
        )
        for rows in (pipelines, commits, jobs, artifacts):
            rows.clear()

    while job_id < n_jobs:
        pipeline_id += 1
        project = rng.choices(projects, weights)[0]
        iids[project] += 1
        user_id = rng.randint(1, N_USERS)
        created = START + pipeline_id * 1200 + rng.random() * 600
        sha = hashlib.sha1(f"{project}:{pipeline_id}".encode()).hexdigest()
        r = rng.random()
        ref, tag = (
            ("main", 0) if r < 0.7 else ((f"v1.{pipeline_id}", 1) if r < 0.75 else (f"feature-{pipeline_id % 97}", 0))
        )
        active = job_id >= active_from
        fate = "running" if active else rng.choices(FATES, FATE_WEIGHTS)[0]
        size = min(rng.randint(5, 45), n_jobs - job_id)
        finished_at = created
        for k in range(size):
            job_id += 1
            stage, name = STAGES[k % len(STAGES)]
            stage_idx = ("build", "test", "deploy").index(stage)
            status = rng.choice(ACTIVE) if active else job_status(rng, fate)
            queued = created + 1 + stage_idx * 240
            started = queued + rng.random() * 30 if status not in ("created", "pending", "skipped", "manual") else None
            finished = started + 30 + rng.random() * 200 if started and status != "running" else None
            finished_at = max(finished_at, finished or 0)
            expire = utc(created + ARTIFACTS_EXPIRE_AFTER) if stage == "build" and status == "success" else None
            jobs.append(
                (
                    job_id,
                    project,
                    pipeline_id,
                    f"{name} {k // len(STAGES)}" if k >= len(STAGES) else name,
                    stage,
                    stage_idx,
                    status,
                    "manual" if status == "manual" else "on_success",
                    0,
                    "script_failure" if status == "failed" else None,
                    round(rng.random() * 100, 2) if name == "unit" and finished else None,
                    user_id,
                    (job_id % N_RUNNERS) + 1 if started else None,
                    int(status in ("failed", "canceled") and rng.random() < 0.25),
                    SCRIPT,
                    VARIABLES,
                    TAGS,
                    utc(created),
                    utc(finished or started or created),
                    utc(queued) if started else None,
                    utc(started) if started else None,
                    utc(finished) if finished else None,
                    expire,
                )
            )
            if expire:
                digest = hashlib.sha256(str(job_id).encode()).hexdigest()
                artifacts.append(
                    (
                        job_id,
                        project,
                        1024 + job_id % 100_000,
                        digest,
                        f"artifacts/{job_id}/{digest}.zip",
                        expire,
                        utc(finished),
                    )
                )
        counts[project] += size
        if project == 1 and sample_pipeline is None and size >= 20:
            sample_pipeline = pipeline_id
        pipelines.append(
            (
                pipeline_id,
                iids[project],
                project,
                ref,
                sha,
                tag,
                "push",
                fate,
                user_id,
                utc(created),
                utc(max(finished_at, created)),
                utc(created + 1),
                None if active else utc(finished_at),
            )
        )
        commits.append(
            (
                project,
                sha,
                f"Change {pipeline_id}",
                f"Change {pipeline_id}\n\nBenchmark data.\n",
                "Bench Author",
                "author@example.com",
                utc(created - 60).replace("Z", "+00:00"),
                "Bench Author",
                "author@example.com",
                utc(created - 60).replace("Z", "+00:00"),
                utc(created - 60).replace("Z", "+00:00"),
                "[]",
            )
        )
        if len(jobs) >= 50_000:
            flush()
    flush()
    return {"pipelines": pipeline_id, "project_jobs": counts, "sample_pipeline": sample_pipeline}


def link_artifact_files(db: Path, root: Path) -> int:
    """A hard link of one small zip at every archive row's key under ``root``; returns how many.

    With a file for every row, the start-up reconciliation of a directory store finds none missing (it logs an
    error for each missing one), and a download of any of them works."""
    source = root / "tmp" / "bench-artifact.zip"
    source.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        keys = [row[0] for row in con.execute("SELECT store_key FROM job_artifacts WHERE file_type = 'archive'")]
    made_dirs: set[Path] = set()
    for index, key in enumerate(keys):
        if index % LINKS_PER_FILE == 0:  # a file system allows so many links to one inode (ext4: 65,000)
            source.unlink(missing_ok=True)
            with zipfile.ZipFile(source, "w") as archive:
                archive.writestr("build/output.txt", "benchmark artifact\n")
        target = root / key
        if target.parent not in made_dirs:
            target.parent.mkdir(parents=True, exist_ok=True)
            made_dirs.add(target.parent)
        target.unlink(missing_ok=True)
        os.link(source, target)
    source.unlink(missing_ok=True)
    return len(keys)


def generate(
    out: Path, n_jobs: int = 1_000_000, n_projects: int = 1_000, big_share: float = 0.2, seed: int = 1
) -> dict:
    """A fresh database in ``out`` (what was there is replaced), a file for every archive, and bench.json (last:
    its presence means the directory is complete); returns bench.json's facts."""
    db = out / DB_NAME
    out.mkdir(parents=True, exist_ok=True)
    for name in ("bench.json", DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "artifacts", ignore_errors=True)

    began = time.perf_counter()
    con = sqlite3.connect(db, isolation_level=None)
    create_schema(con)
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -1000000", "temp_store = MEMORY"):
        con.execute(f"PRAGMA {pragma}")
    con.execute("BEGIN")
    fill_static(con, n_projects)
    facts = fill_history(con, n_jobs, n_projects, big_share, seed)
    con.execute("COMMIT")
    filled = time.perf_counter() - began
    con.execute("ANALYZE")
    con.execute("PRAGMA journal_mode = WAL")
    counts = facts.pop("project_jobs")
    info = {
        "jobs": n_jobs,
        "projects": n_projects,
        "pipelines": facts["pipelines"],
        "job_artifacts": con.execute("SELECT count(*) FROM job_artifacts").fetchone()[0],
        "admin_token": ADMIN_TOKEN,
        "member_token": MEMBER_TOKEN,
        "member_user_id": MEMBER_USER_ID,
        "big_project": 1,
        "big_project_jobs": counts[1],
        "project_jobs": {str(p): n for p, n in enumerate(counts) if p},
        "smallest_project_jobs": min(counts[1:]),
        "sample_pipeline": facts["sample_pipeline"],
        "seed": seed,
        "fill_seconds": round(filled, 1),
    }
    con.close()
    info["artifact_files"] = link_artifact_files(db, out)
    info["total_seconds"] = round(time.perf_counter() - began, 1)
    info["db_bytes"] = db.stat().st_size
    (out / "bench.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/jobsvc-bench/data"), help="data directory to create")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--projects", type=int, default=1_000)
    parser.add_argument("--big-share", type=float, default=0.2, help="share of the pipelines in project 1")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="replace an existing database in --out")
    args = parser.parse_args()
    if (args.out / DB_NAME).exists() and not args.force:
        parser.error(f"{args.out / DB_NAME} exists; pass --force to replace it")
    info = generate(args.out, args.jobs, args.projects, args.big_share, args.seed)
    print(json.dumps({k: v for k, v in info.items() if k != "project_jobs"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
