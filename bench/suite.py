"""What bench/run runs: jobsvc and its references side by side, interleaved rounds, then the one table.

Servers, all on --server-cpu (core 0), all up for the whole run, measured one at a time; every client (wrk,
curl, this process) on --client-cpu (core 1):

* ``list``: ``jobsvc serve`` on the 1M-job data directory (``--jobs-rate-limit 0``; everything else as shipped:
  the sweeper runs, at info level, with nothing to sweep);
* ``files``: ``jobsvc serve`` on the artifacts store (the 1 GiB archive, the 500 MiB log);
* nginx, the minimal aiohttp app, Prism and json-server (``refs``), the last three serving ``list``'s own page 1.

Each round: the checks (page 1 has 20 jobs, the deep page still carries its archives, the tail is the log's
last 64 KiB), every wrk scenario (64 connections) in an order that rotates from round to round, the 1 GiB
download from jobsvc and nginx in alternating order, the stored and the deflated 100 MiB entry (time to first
byte, MB/s, the server's RSS growth), and the log appends on a fresh server. Then, once: the connection
sweep, the appends under strace (durability), ``jobsvc serve --demo``'s start-up, and PostgreSQL + S3
(``pgs3``). Ratios are taken within a round; the table gives medians [min–max] over rounds.
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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pgs3
import prepare
import probes
import refs
import table
from common import jobsvc_serve, pin_self, run_wrk, spawn, stop_process, wait_listening, write_wrk_script

TAIL = 65536
CONNS = 64
SWEEP = (1, 16, 64, 256)


@dataclass(frozen=True)
class Load:
    """One wrk scenario: a server (by name), a path, and whether it asks for the 64 KiB tail."""

    server: str
    path: str
    token: str = ""  # "list" or "files": whose token goes in PRIVATE-TOKEN
    tail: bool = False


@dataclass
class Servers:
    ports: dict[str, int]
    procs: dict[str, subprocess.Popen]
    logs: dict[str, Path]


def loads(facts: dict, paths: dict[str, str]) -> dict[str, Load]:
    project = facts["big_project"]
    jobs = f"/api/v4/projects/{project}/jobs?per_page=20"
    deep = f"{jobs}&pagination=keyset&cursor={quote(facts['deep_cursor'], safe='')}"
    return {
        "list page 1": Load("list", jobs, "list"),
        "list deep keyset": Load("list", deep, "list"),
        "pipeline jobs": Load(
            "list", f"/api/v4/projects/{project}/pipelines/{facts['pipeline']}/jobs?per_page=20", "list"
        ),
        "list 2k project": Load("list", f"/api/v4/projects/{facts['small_project']}/jobs?per_page=20", "list"),
        "one job": Load("list", f"/api/v4/projects/{project}/jobs/{facts['one_job']}", "list"),
        "version": Load("list", "/api/v4/version", "list"),
        "prism page": Load("prism", paths["prism"]),
        "json-server page": Load("json-server", paths["json-server"]),
        "aiohttp page": Load("min_app", "/page.json"),
        "nginx page": Load("nginx", "/page.json"),
        "log tail": Load("files", f"/api/v4/projects/1/jobs/{prepare.BIG_JOB}/trace", "files", tail=True),
        "aiohttp pread tail": Load("min_app", "/tail/big.log", tail=True),
        "aiohttp FileResponse tail": Load("min_app", "/file/big.log", tail=True),
        "nginx tail": Load("nginx", "/big.log", tail=True),
    }


def headers_of(load: Load, tokens: dict[str, str]) -> dict[str, str]:
    headers = {"PRIVATE-TOKEN": tokens[load.token]} if load.token else {}
    return {**headers, "Range": f"bytes=-{TAIL}"} if load.tail else headers


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check(servers: Servers, scenarios: dict[str, Load], tokens: dict[str, str], facts: dict, tail: bytes) -> None:
    """The data is still what the run measures: SystemExit otherwise."""
    for name in ("list page 1", "list deep keyset", "pipeline jobs", "list 2k project"):
        load = scenarios[name]
        status, body = get(servers.ports[load.server], load.path, headers_of(load, tokens))
        if status != 200 or len(json.loads(body)) != 20:
            raise SystemExit(f"{name}: {status} with {body[:300]!r}")
        if name == "list deep keyset":
            ids, archives = [job["id"] for job in json.loads(body)], body.count(b'"artifacts_file":')
            if ids != facts["deep_ids"] or archives != facts["deep_archives"]:
                raise SystemExit(
                    f"the deep page changed: ids {ids}, {archives} archives (want {facts['deep_archives']})"
                )
    for name in ("log tail", "aiohttp pread tail", "aiohttp FileResponse tail", "nginx tail"):
        load = scenarios[name]
        status, body = get(servers.ports[load.server], load.path, headers_of(load, tokens))
        if status != 206 or body != tail:
            raise SystemExit(f"{name}: {status} with {len(body)} bytes, not the log's last {TAIL}")


def fail_on_errors(servers: Servers, when: str) -> None:
    for name, log in servers.logs.items():
        if name in ("list", "files") and (found := probes.error_lines(log)):
            raise SystemExit(f"jobsvc ({name}) logged errors {when}: {found[:5]} (in {log})")


def start_all(args: argparse.Namespace, run: Path, stack: contextlib.ExitStack, data: dict) -> tuple[Servers, dict]:
    servers = Servers({}, {}, {})

    def keep(name: str, proc: subprocess.Popen, port: int, log: Path) -> None:
        stack.callback(stop_process, proc)
        servers.procs[name], servers.ports[name], servers.logs[name] = proc, port, log

    began, spawned = time.perf_counter(), {}
    for name, folder in (("list", data["jobs_dir"]), ("files", data["store"])):  # both start at once
        log = run / f"jobsvc-{name}.log"
        spawned[name] = (
            spawn(jobsvc_serve(["--data-dir", str(folder), "--jobs-rate-limit", "0"], args.server_cpu), log),
            log,
        )
        stack.callback(stop_process, spawned[name][0])
    for name, (proc, log) in spawned.items():
        keep(name, proc, wait_listening(proc, log, timeout=600), log)  # 12-130 s on the 1M-job data here
        data[f"{name}_start_s"] = time.perf_counter() - began
    time.sleep(1)
    data["idle_rss_mb"] = probes.vm_rss_mb(servers.procs["list"].pid)  # after start, before any request
    fail_on_errors(servers, "at start")
    tokens = {"list": data["jobs"]["admin_token"], "files": data["files"]["token"]}
    status, page = get(servers.ports["list"], f"/api/v4/projects/{data['jobs']['big_project']}/jobs?per_page=20",
                       {"PRIVATE-TOKEN": tokens["list"]})  # fmt: skip
    if status != 200:
        raise SystemExit(f"page 1: {status} {page[:300]!r}")
    www = run / "www"  # what nginx and min_app serve: the page, and links to the big files
    www.mkdir()
    (www / "page.json").write_bytes(page)
    for name, path in data["files"]["paths"].items():
        (www / name).symlink_to(path)
    proc, port = refs.start_nginx(www, run, args.server_cpu, "/page.json")
    keep("nginx", proc, port, run / "nginx.log")
    proc, port = refs.start_min_app(www / "page.json", www, run, args.server_cpu)
    keep("min_app", proc, port, run / "min_app.log")
    paths = {}
    proc, port, paths["prism"] = refs.start_prism(data["npm"]["prism"], page, run, args.server_cpu)
    keep("prism", proc, port, run / "prism.log")
    proc, port, paths["json-server"] = refs.start_json_server(data["npm"]["json-server"], page, run, args.server_cpu)
    keep("json-server", proc, port, run / "json-server.log")
    data["page_bytes"] = len(page)
    return servers, {"tokens": tokens, "paths": paths}


def wrk_load(servers: Servers, load: Load, tokens: dict, secs: float, conns: int, args, lua: Path) -> dict:
    url = f"http://127.0.0.1:{servers.ports[load.server]}{load.path}"
    return run_wrk(url, headers_of(load, tokens), conns, secs, lua, args.client_cpu)


def files_round(servers: Servers, data: dict, args: argparse.Namespace) -> dict:
    """The downloads and the two entries, on the files server and nginx."""
    token, cpu = {"PRIVATE-TOKEN": data["files"]["token"]}, args.client_cpu
    size = data["files"]["manifest"]["files"]["big.zip"]["size"]
    base = f"http://127.0.0.1:{servers.ports['files']}/api/v4/projects/1/jobs/{prepare.BIG_JOB}/artifacts"
    targets = {"jobsvc": (base, token), "nginx": (f"http://127.0.0.1:{servers.ports['nginx']}/big.zip", {})}
    speeds: dict[str, list[float]] = {"jobsvc": [], "nginx": []}
    order = ["nginx", "jobsvc"] if args.round % 2 else ["jobsvc", "nginx"]
    for index in range(args.downloads):
        for name in order if index % 2 == 0 else order[::-1]:
            got = probes.curl(*targets[name], cpu)
            if got["status"] != 200 or got["bytes"] != size:
                raise SystemExit(f"{name} download: {got}")
            speeds[name].append(got["bytes"] / got["total"] / 1e6)
    result = {f"download {name}": statistics.median(values) for name, values in speeds.items()}
    for member, label in ((prepare.STORED_MEMBER, "stored"), (prepare.DEFLATED_MEMBER, "deflated")):
        expected = data["files"]["manifest"]["members"]["big.zip"][member]["size"]
        pid = servers.procs["files"].pid
        time.sleep(0.3)
        before = probes.vm_rss_mb(pid)
        with probes.RssSampler(pid) as sampler:
            got = probes.curl(f"{base}/{member}", token, cpu)
        if got["status"] != 200 or got["bytes"] != expected:
            raise SystemExit(f"{member}: {got}")
        result[f"{label} MB/s"] = got["bytes"] / got["total"] / 1e6
        result[f"{label} ttfb ms"] = got["ttfb"] * 1000
        result[f"{label} rss growth MB"] = sampler.peak - before
    return result


def run_rounds(servers: Servers, data: dict, extra: dict, args: argparse.Namespace, run: Path, lua: Path) -> list:
    scenarios = loads(data["jobs"], extra["paths"])
    tokens = extra["tokens"]
    log = Path(data["files"]["paths"]["big.log"])
    with log.open("rb") as handle:
        handle.seek(log.stat().st_size - TAIL)
        tail = handle.read()
    for path in data["files"]["paths"].values():  # the page cache, for every server alike
        with open(path, "rb") as handle:
            while handle.read(8 << 20):
                pass
    check(servers, scenarios, tokens, data["jobs"], tail)
    if not args.quick:  # --quick: the first round is the warm-up too
        print("# warm-up", flush=True)
        for load in scenarios.values():
            wrk_load(servers, load, tokens, 1, CONNS, args, lua)
    fixture = prepare.trace_fixture(run / "traces.json")
    rounds = []
    names = list(scenarios)
    for number in range(args.rounds):
        args.round = number
        time.sleep(1)  # what the last wrk run left queued is done (aiohttp runs abandoned handlers to the end)
        check(servers, scenarios, tokens, data["jobs"], tail)
        result: dict = {}
        shift = (number * 5) % len(names)
        for name in names[shift:] + names[:shift]:
            result[name] = wrk_load(servers, scenarios[name], tokens, args.secs, CONNS, args, lua)
            time.sleep(args.pause)
        result.update(files_round(servers, data, args))
        result["appends"] = probes.appends(run / "appends", fixture, args.append_secs, args.server_cpu)
        rounds.append(result)
        print(f"round {number + 1}: " + table.round_line(result), flush=True)
    check(servers, scenarios, tokens, data["jobs"], tail)
    return rounds


def once(servers: Servers, data: dict, extra: dict, args: argparse.Namespace, run: Path, lua: Path) -> dict:
    scenarios = loads(data["jobs"], extra["paths"])
    result: dict = {"sweep": {}}
    time.sleep(1)
    for conns in SWEEP:
        result["sweep"][conns] = wrk_load(
            servers, scenarios["list page 1"], extra["tokens"], args.secs, conns, args, lua
        )
        time.sleep(args.pause)
    print("# sweep: " + table.sweep_line(result["sweep"]), flush=True)
    fixture = prepare.trace_fixture(run / "traces.json")
    result["synced"] = probes.synced_appends(run / "appends-strace", fixture, 2, args.server_cpu)
    result["startup"] = probes.startup(args.startups, args.server_cpu, run)
    return result


def versions(data: dict) -> dict[str, str]:
    import sqlite3

    import aiohttp
    import aiosqlite

    import jobsvc

    def out(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except OSError:
            return "?"
        return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "?"

    here = Path(__file__).resolve().parent
    commit = out(["git", "-C", str(here), "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "-C", str(here), "status", "--porcelain", "--", "../jobsvc"])
    npm = refs.npm_versions(Path(data["npm_dir"]))
    return {
        "jobsvc": f"{jobsvc.__version__} (commit {commit}{', jobsvc/ modified' if dirty not in ('?', '') else ''})",
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "aiohttp": aiohttp.__version__,
        "aiosqlite": aiosqlite.__version__,
        "nginx": out([refs._nginx() or "nginx", "-v"]).split("/")[-1],
        "wrk": out(["wrk", "-v"]).split()[1] if out(["wrk", "-v"]) != "?" else "?",
        "node": out(["node", "--version"]),
        "prism": npm["@stoplight/prism-cli"],
        "json-server": npm["json-server"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s: under 3 minutes once the data exists")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--secs", type=int, default=5, help="seconds of each wrk run")
    parser.add_argument("--downloads", type=int, default=3, help="1 GiB downloads per server and round (median)")
    parser.add_argument("--append-secs", type=float, default=5)
    parser.add_argument("--startups", type=int, default=10)
    parser.add_argument("--pg-jobs", type=int, default=100_000, help="jobs in the PostgreSQL + S3 comparison")
    parser.add_argument("--pg-rounds", type=int, default=5, help="rounds of the PostgreSQL + S3 comparison")
    parser.add_argument("--no-pg", action="store_true", help="leave out PostgreSQL + S3")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between two wrk runs")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "latest.md")
    parser.add_argument("--render", type=Path, help="only make the table again from a run's figures (last-run.json)")
    args = parser.parse_args(argv)
    if args.render:
        return report(json.loads(args.render.read_text()), args.out)
    if args.quick:
        args.rounds, args.secs, args.downloads, args.append_secs, args.startups = 2, 1, 1, 1, 3
        args.pg_jobs, args.pg_rounds, args.pause = 5_000, 1, 0.1
    began, load = time.perf_counter(), os.getloadavg()[0]

    def phase(what: str) -> None:
        print(f"# {time.perf_counter() - began:5.0f} s: {what}", flush=True)

    refs.ensure_tools()
    if not pin_self(args.client_cpu):
        print("warning: one CPU only: server and client share it; the numbers mean little", file=sys.stderr)
    base = prepare.root()
    base.mkdir(parents=True, exist_ok=True)
    data: dict = {"npm_dir": str(base / "npm")}
    data["jobs_dir"], data["jobs"] = prepare.jobs_data(base)
    data["store"], data["files"] = prepare.artifacts_data(base)
    data["npm"] = refs.ensure_npm(base / "npm")
    data["prepared_s"] = time.perf_counter() - began
    phase("data ready under " + str(base))
    run = Path(tempfile.mkdtemp(prefix="run-", dir=base))  # on the data's disk: fdatasync is real there
    run.chmod(0o711)  # PostgreSQL runs as its own user (backing.py) and must reach its directory in here
    try:
        with contextlib.ExitStack() as stack:
            servers, extra = start_all(args, run, stack, data)
            ports = ", ".join(f"{n} :{p}" for n, p in servers.ports.items())
            phase(f"servers up ({ports}); jobsvc on the 1M-job data listened after {data['list_start_s']:.1f} s")
            lua = write_wrk_script(run)
            rounds = run_rounds(servers, data, extra, args, run, lua)
            phase("rounds done")
            single = once(servers, data, extra, args, run, lua)
            phase("sweep, durability and start-up done")
            fail_on_errors(servers, "during the run")
        if not args.no_pg:
            single["pg"] = pgs3.compare(run / "pgs3", args, write_wrk_script(run))
            phase("PostgreSQL + S3 done")
        meta = {
            "versions": versions(data),
            "seconds": time.perf_counter() - began,
            "args": vars(args),
            "load_start": load,
        }
        raw = {"rounds": rounds, "single": single, "data": data, "meta": meta}
        (base / "last-run.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    finally:
        shutil.rmtree(run, ignore_errors=True)
    return report(raw, args.out)


def report(raw: dict, out: Path) -> int:
    """The table from a run's figures, printed and written to ``out``; 1 if a jobsvc logged errors."""
    raw["meta"]["args"] = argparse.Namespace(**raw["meta"]["args"])
    raw["single"]["sweep"] = {int(conns): result for conns, result in raw["single"]["sweep"].items()}
    text, errors = table.render(raw["rounds"], raw["single"], raw["data"], raw["meta"])
    print("\n" + text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"\nwritten to {out}")
    if errors:
        print(f"FAILED: jobsvc logged {len(errors)} error lines (above)", file=sys.stderr)
        return 1
    return 0
