#!/usr/bin/env python3
"""EXPLAIN QUERY PLAN for every list query jobsvc issues; exits 1 if one is not served by an index.

    .venv/bin/python bench/explain.py [--data-dir /tmp/jobsvc-bench/data] [--no-time] [--quiet] [--only PREFIX]

The SQL is not copied: the real ``jobsvc.storage.repo.Repository`` methods run against a recorder that
captures each statement and its parameters. Every statement is planned twice: on a fresh
schema-only database (no sqlite_stat1: what a server that never ran ANALYZE gets) and, with
--data-dir, on the generated benchmark database (analyzed), where it is also timed (stdlib
sqlite3, read-only, warm cache, median of 7 runs).

A plan line fails the check when it
  * contains ``USE TEMP B-TREE`` (a sort of every matching row before LIMIT applies), or
  * contains ``AUTOMATIC`` (an index built per query), or
  * is ``SCAN <table>`` of a real table, unless the case allows that exact line and says why.
``SCAN (subquery-N)`` / ``SCAN json_each`` read a bounded co-routine or a JSON value, not a table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jobsvc.storage.db import migrations, schema_path
from jobsvc.storage.repo import Repository

DB_NAME = "jobsvc.sqlite3"
NOT_A_TABLE = re.compile(r"^SCAN (\(subquery-\d+\)|json_each|json_tree)(\s|$)")
ADMIN_SCAN = "admin sees every project: walks projects in id order, stops after LIMIT + OFFSET rows"
ADMIN_PATH_SCAN = "admin sees every project: walks an ordering index in order, stops after LIMIT + OFFSET rows"
CAPPED_SCAN = "unfiltered count, capped at 10,001 index entries"
SHA_SORT = (
    "with statistics, SQLite sorts the pipelines of one commit (a handful) rather than walk the index "
    "backwards; jobsvc never runs ANALYZE, and the fresh-schema plan has no sort"
)


class Recorder:
    """Stands in for jobsvc.storage.db.Database: records the reads, answers nothing."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []

    async def fetchall(self, sql: str, params: Any = ()) -> list[Any]:
        self.statements.append((sql, params))
        return []

    async def fetchone(self, sql: str, params: Any = ()) -> Any:
        self.statements.append((sql, params))
        return None


Call = Callable[[Repository], Coroutine[Any, Any, Any]]


def cases(v: dict[str, int]) -> list[tuple[str, Call, dict[str, str]]]:
    """(label, repository call, {allowed plan line: reason}) for every list the server serves."""
    p, pl, deep, user = v["project"], v["pipeline"], v["deep_id"], v["member"]
    three = ["failed", "canceled", "running"]
    jobs: list[tuple[str, Call]] = [
        ("project jobs, page 1", lambda r: r.project_jobs(p, [], limit=20)),
        ("project jobs, deep keyset (after)", lambda r: r.project_jobs(p, [], limit=20, after=deep)),
        ("project jobs, deep offset (page 2500)", lambda r: r.project_jobs(p, [], limit=20, offset=49_980)),
        ("project jobs, scope failed", lambda r: r.project_jobs(p, ["failed"], limit=20)),
        ("project jobs, scope failed, deep keyset", lambda r: r.project_jobs(p, ["failed"], limit=20, after=deep)),
        ("project jobs, 3 scopes", lambda r: r.project_jobs(p, three, limit=20)),
        ("project jobs, 3 scopes, deep keyset", lambda r: r.project_jobs(p, three, limit=20, after=deep)),
        ("project jobs, 3 scopes, offset 10000", lambda r: r.project_jobs(p, three, limit=20, offset=10_000)),
        ("pipeline jobs", lambda r: r.pipeline_jobs(pl, [], include_retried=False, limit=20, offset=0)),
        ("pipeline jobs, include_retried", lambda r: r.pipeline_jobs(pl, [], include_retried=True, limit=20, offset=0)),
        (
            "pipeline jobs, scope failed+success",
            lambda r: r.pipeline_jobs(pl, ["failed", "success"], include_retried=False, limit=20, offset=0),
        ),
    ]
    out: list[tuple[str, Call, dict[str, str]]] = [(label, call, {}) for label, call in jobs]
    for label, filters in [
        ("", {}),
        ("scope=finished", {"scope": "finished"}),
        ("status=failed", {"status": "failed"}),
        ("ref=main", {"ref": "main"}),
        ("ref=main&status=success", {"ref": "main", "status": "success"}),
        ("sha=…", {"sha": "0" * 40}),
        ("username=user1", {"username": "user1"}),
        ("scope=tags", {"scope": "tags"}),
        ("source=parent_pipeline", {"source": "parent_pipeline"}),
    ]:
        allow = {"USE TEMP B-TREE FOR ORDER BY": SHA_SORT} if "sha" in filters else {}
        out.append(
            (
                f"pipelines {label}".strip(),
                lambda r, f=filters: r.project_pipelines(p, f, order_by="id", sort="desc", limit=20, offset=0),
                allow,
            )
        )
    for order in ("status", "ref", "updated_at", "user_id"):
        out.append(
            (
                f"pipelines order_by={order}",
                lambda r, o=order: r.project_pipelines(p, {}, order_by=o, sort="desc", limit=20, offset=0),
                {},
            )
        )
    kw = {"visibility": None, "search": None, "sort": "desc", "limit": 20, "offset": 0}
    admin_allow = {
        "SCAN pr": ADMIN_SCAN,
        "SCAN pr USING INDEX sqlite_autoindex_projects_1": ADMIN_PATH_SCAN,
        "SCAN pr USING INDEX projects_name": ADMIN_PATH_SCAN,
        "SCAN pr USING INDEX projects_last_activity": ADMIN_PATH_SCAN,
    }
    # the unfiltered count reads the smallest index, capped at 10,001 entries
    admin_allow |= {
        f"SCAN pr USING COVERING INDEX {index}": CAPPED_SCAN
        for index in ("sqlite_autoindex_projects_1", "projects_visibility", "projects_name", "projects_last_activity")
    }
    for order in ("created_at", "path", "name", "last_activity_at"):
        out.append(
            (
                f"projects, admin, order_by={order}",
                lambda r, o=order: r.visible_projects(user_id=1, admin=True, membership=False, order_by=o, **kw),
                admin_allow,
            )
        )
    out += [
        (
            "projects, member",
            lambda r: r.visible_projects(user_id=user, admin=False, membership=False, order_by="created_at", **kw),
            {},
        ),
        (
            "projects, member, membership=true",
            lambda r: r.visible_projects(user_id=user, admin=False, membership=True, order_by="created_at", **kw),
            {},
        ),
        (
            "projects, anonymous",
            lambda r: r.visible_projects(user_id=None, admin=False, membership=False, order_by="created_at", **kw),
            {},
        ),
        ("lookup: token by digest", lambda r: r.token_by_digest(hashlib.sha256(b"x").hexdigest()), {}),
        ("lookup: project by id", lambda r: r.project_by_id(p, user), {}),
        ("lookup: pipeline", lambda r: r.pipeline(p, pl), {}),
        ("lookup: job", lambda r: r.job(p, deep), {}),
    ]
    return out


def record(call: Call) -> list[tuple[str, Any]]:
    recorder = Recorder()
    asyncio.run(call(Repository(recorder)))  # type: ignore[arg-type]
    return recorder.statements


def plan(con: sqlite3.Connection, sql: str, params: Any) -> list[str]:
    rows = con.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    depth = {0: -1}
    lines = []
    for node, parent, _unused, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


def problems(lines: list[str], allow: dict[str, str]) -> tuple[list[str], list[str]]:
    bad, allowed = [], []
    for line in (raw.strip() for raw in lines):
        if line in allow:
            allowed.append(f"{line}  ({allow[line]})")
        elif any(word in line for word in ("USE TEMP B-TREE", "AUTOMATIC")) or (
            line.startswith("SCAN ") and not NOT_A_TABLE.match(line)
        ):
            bad.append(line)
    return bad, allowed


def timed(con: sqlite3.Connection, sql: str, params: Any, reps: int = 7) -> float:
    con.execute(sql, params).fetchall()
    samples = []
    for _ in range(reps):
        began = time.perf_counter()
        con.execute(sql, params).fetchall()
        samples.append((time.perf_counter() - began) * 1e6)
    return statistics.median(samples)


def values_from(con: sqlite3.Connection | None) -> dict[str, int]:
    if con is None:
        return {"project": 1, "pipeline": 1, "deep_id": 1_000, "member": 2}
    n = con.execute("SELECT count(*) FROM jobs WHERE project_id = 1").fetchone()[0]
    deep = con.execute(
        "SELECT id FROM jobs WHERE project_id = 1 ORDER BY id DESC LIMIT 1 OFFSET ?", (int(n * 0.9),)
    ).fetchone()[0]
    pipeline = con.execute(
        "SELECT pipeline_id FROM jobs WHERE project_id = 1 GROUP BY pipeline_id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()[0]
    return {"project": 1, "pipeline": pipeline, "deep_id": deep, "member": 2}


def fresh_schema() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    for _version, script in migrations(schema_path().read_text(encoding="utf-8")):
        con.executescript(script)
    return con


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="a directory made by gen_jobs_db.py (adds analyzed plans, times)")
    parser.add_argument("--no-time", action="store_true", help="do not time the statements")
    parser.add_argument("--quiet", action="store_true", help="print only failing statements and the summary")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PREFIX",
        help="check only the cases whose label starts with PREFIX (repeatable), e.g. 'project jobs'",
    )
    args = parser.parse_args()
    bench = None
    if args.data_dir:
        bench = sqlite3.connect(f"file:{args.data_dir / DB_NAME}?mode=ro", uri=True)
        bench.execute("PRAGMA cache_size = -32000")  # the server's reader settings (jobsvc.storage.db)
        bench.execute("PRAGMA mmap_size = 268435456")
    dbs = [("fresh schema, no ANALYZE", fresh_schema())] + ([("benchmark DB, analyzed", bench)] if bench else [])
    values = values_from(bench)
    print(f"# parameters: {json.dumps(values)}; sqlite {sqlite3.sqlite_version}")
    failures, summary = [], []
    for label, call, allow in cases(values):
        if args.only and not any(label.startswith(prefix) for prefix in args.only):
            continue
        for index, (sql, params) in enumerate(record(call)):
            kind = "count" if sql.lstrip().startswith("SELECT count(*)") else ("list" if index == 0 else "query")
            name = f"{label} [{kind}]"
            report, verdicts, cost = [], [], ""
            for db_label, con in dbs:
                lines = plan(con, sql, params)
                bad, allowed = problems(lines, allow)
                if con is bench and not args.no_time:
                    cost = f"{timed(con, sql, params):,.0f}"
                verdicts.append("FAIL: " + "; ".join(bad) if bad else ("ok (allowed scan)" if allowed else "ok"))
                report.append(f"  -- {db_label}: {verdicts[-1]}" + (f"  {cost} µs" if cost and con is bench else ""))
                report += [f"     {line}" for line in lines] + [f"     allowed: {a}" for a in allowed]
                failures += [f"{name} ({db_label}): {'; '.join(bad)}"] if bad else []
            summary.append((name, *verdicts, cost))
            if not args.quiet or any(v.startswith("FAIL") for v in verdicts):
                print(f"\n{name}\n" + "\n".join(report))
    print("\n| statement | " + " | ".join(label for label, _ in dbs) + (" | µs (analyzed DB) |" if bench else " |"))
    print("| --- " * (len(dbs) + 1 + bool(bench)) + "|")
    for row in summary:
        print("| " + " | ".join(row[: len(dbs) + 1 + bool(bench)]) + " |")
    print(f"\n# {len(summary) * len(dbs)} plans checked, {len(failures)} failing")
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
