"""bench/run's one table: each target of the performance issue as a row (scenario, jobsvc, reference, ratio
[min–max], target, pass or miss), and the run's facts around it (date, machine, rounds, versions).

A ratio is taken within each round, then its median (and range) over the rounds; pass or miss is decided on
that median. Rows marked ``info`` have no target: they put the figure beside the others.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Sequence

PASS, MISS, INFO = "pass", "**miss**", "info"


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], fmt: str = ",.0f") -> str:
    return f"{med(values):{fmt}} [{min(values):{fmt}}–{max(values):{fmt}}]"


def ratios(rounds: list[dict], a: str, b: str, key: str = "rps") -> list[float]:
    """``a / b`` in each round where ``b`` is not 0 (a server that answered nothing in a whole wrk run: the
    machine stalled it; that round says nothing about the ratio)."""
    return [r[a][key] / r[b][key] for r in rounds if r[b][key]]


def verdict(value: float, op: str, bound: float) -> str:
    ok = {"≥": value >= bound, "≤": value <= bound, "<": value < bound}[op]
    return PASS if ok else MISS


def round_line(r: dict) -> str:
    wrk = ", ".join(
        f"{name} {r[name]['rps']:,.0f}" + (f" ({r[name]['bad']} bad)" if r[name]["bad"] else "")
        for name in r
        if isinstance(r[name], dict) and "rps" in r[name]
    )
    return (
        f"req/s: {wrk}; download {r['download jobsvc']:,.0f} MB/s (nginx {r['download nginx']:,.0f}); stored "
        f"{r['stored MB/s']:,.0f} MB/s; deflated {r['deflated MB/s']:,.0f} MB/s; "
        f"appends {r['appends']['appends_per_s']:,.0f}/s"
    )


def sweep_line(sweep: dict) -> str:
    return ", ".join(f"{c}: {w['rps']:,.0f} req/s p99 {w['p99']:.1f} ms, {w['bad']} bad" for c, w in sweep.items())


def _machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
        with open("/proc/meminfo") as meminfo:
            mem_gb = int(meminfo.readline().split()[1]) / 1024**2
    except OSError:
        mem_gb = 0
    return f"{platform.system()} {platform.release()}, {model}, {os.cpu_count()} CPUs, {mem_gb:.0f} GB"


class Rows:
    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(self, scenario: str, jobsvc: str, reference: str, ratio: str, target: str, result: str) -> None:
        self.rows.append((scenario, jobsvc, reference, ratio, target, result))

    def ratio(
        self,
        scenario: str,
        rounds: list[dict],
        a: str,
        b: str,
        ref: str,
        op: str,
        bound: float,
        key: str = "rps",
        unit: str = "",
    ) -> None:
        """jobsvc's ``a`` against the reference ``b`` within each round (``key`` of wrk results, or the figure
        itself), target ``op bound`` (no ``op``: info)."""
        unit = unit or {"rps": "req/s", "p99": "ms"}[key]
        fmt = ",.1f" if unit == "ms" else ",.0f"

        def of(r: dict, name: str) -> float:
            return r[name][key] if isinstance(r[name], dict) else r[name]

        per_round = [of(r, a) / of(r, b) for r in rounds if of(r, b)]
        jobsvc = f"{med([of(r, a) for r in rounds]):{fmt}} {unit}"
        reference = f"{ref} {med([of(r, b) for r in rounds]):{fmt}} {unit}"
        target = f"{op} {bound:g}×" if op else "—"
        if not per_round:
            self.add(scenario, jobsvc, reference, "— (the reference answered nothing)", target, MISS if op else INFO)
            return
        dropped = len(rounds) - len(per_round)
        ratio = spread(per_round, ".2f") + (
            f" ({dropped} round{'s' * (dropped > 1)} left out: the reference answered nothing)" if dropped else ""
        )
        result = verdict(med(per_round), op, bound) if op else INFO
        self.add(scenario, jobsvc, reference, ratio, target, result)

    def value(self, scenario: str, values: list[float], unit: str, op: str, bound: float, fmt: str = ",.0f") -> None:
        self.add(
            scenario,
            f"{spread(values, fmt)} {unit}",
            "—",
            "—",
            f"{op} {bound:g} {unit}",
            verdict(med(values), op, bound),
        )

    def markdown(self) -> str:
        head = ("scenario", "jobsvc", "reference", "ratio [min–max]", "target", "result")
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in self.rows)])


# The rows that compare two figures of one round: scenario, jobsvc's figure, the reference's, the reference's name,
# the target (no operator: info), then which figure of a wrk result ("rps" or "p99") and the unit of the others.
P1 = "list page 1"
RATIO_ROWS: tuple[tuple, ...] = (
    ("job list, page 1: 1M-job database, 200k-job project, full entities, authenticated", P1, "prism page",
     "Prism, canned page", "≥", 1.5),
    ("the same against the minimal aiohttp app's fixed 40 KB body", P1, "aiohttp page", "aiohttp", "≥", 0.2),
    ("the same: p99 at 64 connections against Prism's p99", P1, "prism page", "Prism", "≤", 3, "p99"),
    ("the same against json-server's canned page", P1, "json-server page", "json-server", "", 0),
    ("the same against nginx serving the page as a file", P1, "nginx page", "nginx", "", 0),
    ("deep keyset page (90 % deep) against page 1", "list deep keyset", P1, "page 1", "≥", 0.9),
    ("pipeline jobs list against page 1", "pipeline jobs", P1, "page 1", "≥", 0.9),
    ("a 2k-job project against the 200k-job project (page 1)", "list 2k project", P1, "200k project", "≥", 0.9),
    ("`GET /projects/:id/jobs/:id` against jobsvc's `/version`", "one job", "version", "`/version`", "≥", 0.6),
    ("log tail `Range: bytes=-65536` of the 500 MB log against aiohttp's `pread` tail", "log tail",
     "aiohttp pread tail", "aiohttp pread", "≥", 0.8),
    ("the same against nginx", "log tail", "nginx tail", "nginx", "≥", 0.2),
    ("the same against aiohttp's `FileResponse`", "log tail", "aiohttp FileResponse tail", "aiohttp FileResponse", "",
     0),
    ("1 GiB archive download, one stream (curl)", "download jobsvc", "download nginx", "nginx", "≥", 0.8, "", "MB/s"),
    ("one stored 100 MiB entry of the archive against the archive download", "stored MB/s", "download jobsvc",
     "archive", "≥", 0.5, "", "MB/s"),
)  # fmt: skip


def _ratio_rows(rows: Rows, rounds: list[dict]) -> None:
    for scenario, a, b, ref, op, bound, *rest in RATIO_ROWS:
        key = rest[0] if rest and rest[0] else "rps"
        unit = rest[1] if len(rest) > 1 else ""
        rows.ratio(scenario, rounds, a, b, ref, op, bound, key=key, unit=unit)


def _value_rows(rows: Rows, rounds: list[dict]) -> None:
    rows.value("deflated 100 MiB entry: throughput", [r["deflated MB/s"] for r in rounds], "MB/s", "≥", 100)
    rows.value("deflated entry: first byte", [r["deflated ttfb ms"] for r in rounds], "ms", "≤", 100, ",.1f")
    rows.value(
        "deflated entry: server RSS growth", [r["deflated rss growth MB"] for r in rounds], "MB", "<", 20, ",.1f"
    )


def _append_rows(rows: Rows, rounds: list[dict], synced: dict | None) -> None:
    appends = [r["appends"] for r in rounds]
    rows.value(
        "trace appends, 32 jobs × 16 KiB, each waiting for its 202",
        [a["appends_per_s"] for a in appends],
        "/s",
        "≥",
        2000,
    )
    wrong = [w for a in appends for w in a["wrong"]]
    failures = sum(sum(a["failures"].values()) for a in appends)
    rows.add(
        "the same: every log read back against the chunks acknowledged",
        f"{sum(a['appends'] for a in appends):,} appends, {failures} refused",
        "—",
        "—",
        "no byte lost or duplicated",
        PASS if not wrong else f"{MISS}: {'; '.join(wrong[:3])}",
    )
    if synced is None:
        rows.add(
            "the same: each acknowledged append durable", "not checked (no strace)", "—", "—", "fsync per 202", MISS
        )
    else:
        rows.add(
            "the same: each acknowledged append durable (strace, a 2 s burst apart)",
            f"{synced['log_syncs']:,} log syncs ({synced['failed_syncs']} failed) for {synced['appends']:,} 202s",
            "—",
            "—",
            "a sync per 202",
            PASS if synced["durable"] else MISS,
        )


def _once_rows(rows: Rows, single: dict, data: dict) -> None:
    start = single["startup"]
    rows.value(
        f"`jobsvc serve --demo` to its first answer ({len(start['seconds'])} runs)",
        start["seconds"],
        "s",
        "≤",
        0.3,
        ",.2f",
    )
    rows.value("idle RSS: `serve --demo`, 1 s after its first answer", start["rss_mb"], "MB", "≤", 50, ",.1f")
    rows.add(
        f"`jobsvc serve` on the 1M-job data ({data['jobs']['job_artifacts']:,} archive files) to listening",
        f"{data['list_start_s']:.1f} s",
        "—",
        "—",
        "—",
        INFO,
    )
    rows.value("idle RSS: the 1M-job data, 1 s after start", [data["idle_rss_mb"]], "MB", "≤", 50, ",.1f")
    sweep = single["sweep"]
    bad = sum(w["bad"] for w in sweep.values())
    rows.add(
        "job list page 1 at 1 / 16 / 64 / 256 connections: errors",
        " / ".join(f"{w['rps']:,.0f}" for w in sweep.values()) + " req/s",
        "—",
        "—",
        "no errors",
        PASS if bad == 0 else f"{MISS}: {bad}",
    )
    conns = list(sweep)
    growth = [(sweep[b]["p99"] / sweep[a]["p99"]) / (b / a) for a, b in zip(conns, conns[1:], strict=False)]
    rows.add(
        "the same: p99 growth per step against linear",
        " / ".join(f"{w['p99']:,.1f}" for w in sweep.values()) + " ms",
        "—",
        " / ".join(f"{g:.2f}" for g in growth),
        "each ≤ 1 (at most linear)",
        verdict(max(growth), "≤", 1),
    )
    pg = single.get("pg")
    if pg:
        pr = pg["rounds"]
        one = ratios(pr, "pg+s3", "sqlite")
        two = ratios(pr, "pg+s3×2", "pg+s3")
        rows.add(
            f"job list on PostgreSQL + S3 against SQLite + directory ({pg['jobs']:,} jobs, same data, page 1)",
            f"{med([r['pg+s3']['rps'] for r in pr]):,.0f} req/s",
            f"SQLite {med([r['sqlite']['rps'] for r in pr]):,.0f} req/s",
            spread(one, ".2f"),
            "reported",
            INFO,
        )
        rows.add(
            "the same, two jobsvc processes on one PostgreSQL + bucket against one",
            f"{med([r['pg+s3×2']['rps'] for r in pr]):,.0f} req/s",
            f"one process {med([r['pg+s3']['rps'] for r in pr]):,.0f} req/s",
            spread(two, ".2f"),
            "reported",
            INFO,
        )


def problems(rounds: list[dict], single: dict) -> list[str]:
    found = [line for r in rounds for line in r["appends"]["problems"]] + single["startup"]["problems"]
    return found + (single["pg"]["problems"] if single.get("pg") else [])


def render(rounds: list[dict], single: dict, data: dict, meta: dict) -> tuple[str, list[str]]:
    rows = Rows()
    _ratio_rows(rows, rounds)
    _value_rows(rows, rounds)
    _append_rows(rows, rounds, single["synced"])
    _once_rows(rows, single, data)
    args, jobs = meta["args"], data["jobs"]
    verdicts = [row[5] for row in rows.rows]
    passed, missed = sum(v == PASS for v in verdicts), sum(v.startswith(MISS) for v in verdicts)
    errors = problems(rounds, single)
    mode = "--quick" if args.quick else "full run"
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    pg = single.get("pg")
    pg_data = (
        f" PostgreSQL {pg['pg_version']} + SeaweedFS: {pg['jobs']:,} jobs, {pg['archives']:,} objects." if pg else ""
    )
    text = f"""# bench/run: the latest results

* **When:** {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} ({mode}); the whole run took {meta["seconds"]:.0f} s,
  {data["prepared_s"]:.0f} s of it getting the data ready.
* **Machine:** {_machine()}. Load average {meta["load_start"]:.2f} at the start, {os.getloadavg()[0]:.2f} at the
  end: other work shares the machine.
* **Rounds:** {args.rounds} interleaved rounds. wrk runs of {args.secs} s, 64 connections, one thread.
  {args.downloads} downloads per server and round. Appends for {args.append_secs:g} s per round, on a fresh server
  each time. PostgreSQL + S3: {args.pg_rounds} rounds of its own. jobsvc and every reference on core
  {args.server_cpu}; wrk, curl and the script on core {args.client_cpu}. Ratios within each round; medians
  [min–max] over the rounds; pass or miss on the median.
* **References:** nginx (one process, sendfile); the minimal aiohttp app (bench/min_app.py); Prism with `-v warn`
  (its default info log costs it about half) and json-server (which pretty-prints), both answering jobsvc's own
  page 1.
* **Versions:** {versions}.
* **Data:** {jobs["jobs"]:,} jobs, project {jobs["big_project"]} with {jobs["big_project_jobs"]:,}, project
  {jobs["small_project"]} with {jobs["small_project_jobs"]:,}; {jobs["job_artifacts"]:,} archives, each with its
  file, expiring in 100 years; the page is {data["page_bytes"]:,} bytes. A 1 GiB archive with 10,000 entries,
  a 500 MiB log.{pg_data}
* **Result:** {passed} pass, {missed} miss.

{rows.markdown()}
"""
    bad = {name: sum(r[name]["bad"] for r in rounds) for name in rounds[0] if isinstance(rounds[0][name], dict)
           and "bad" in rounds[0][name]}  # fmt: skip
    if any(bad.values()):
        text += (
            "\nwrk counted errors or non-2xx answers (timeouts included) in: "
            + ", ".join(f"{name} {count:,}" for name, count in bad.items() if count)
            + ".\n"
        )
    if errors:
        text += "\n**Errors logged by a jobsvc process:**\n\n" + "\n".join(f"* `{e}`" for e in errors[:20]) + "\n"
    return text, errors
